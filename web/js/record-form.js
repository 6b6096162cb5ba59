// The add / edit dialog for one record: one control per editable field the API lists, and
// for a reference (a quote's customer, an order's quote and customer) a picker that searches
// the local records by name, so that no one ever types or sees an id.
//
// On edit only the fields the user changed are sent, so that an untouched field can never
// turn into a conflict with someone else's change to it. A refusal names its fields: each
// message is shown under its field, which is highlighted, and the first one gets the focus.

import { api } from "./api.js";
import { busy, h, messageLine, replace } from "./dom.js";
import { customerLabel, formLabel, quoteLabel, recordTitle, singular } from "./format.js";
import { requiredOf } from "./vocabulary.js";

const LONG = new Set(["notes", "address"]);
const PLACEHOLDERS = [
  [/_amount$/, "1250.00"],
  [/_percent$/, "0 to 100"],
  [/(_date|valid_until)$/, "YYYY-MM-DD"],
  [/^email$/, "anna@example.com"],
];
/** The fields that refer to another record, and the entity each one picks from. */
export const REFERENCES = { customer_id: "customers", quote_id: "quotes" };
const CHOICES_LIMIT = 10;
const LOOKUP_DELAY_MS = 150;

// -- controls ---------------------------------------------------------------------------------

/** How each pickable entity's matches read: the line itself, its details, the text once picked. */
const CHOICE_VIEWS = {
  customers: {
    hint: "Type a name, company or e-mail",
    main: (c) => c.name || "Customer without a name",
    detail: (c) => [c.company, c.email].filter(Boolean).join(" · "),
    picked: customerLabel,
  },
  quotes: {
    hint: "Type a quote number, project or customer",
    main: (c) => c.quote_number || "Quote without a number",
    detail: (c) => [c.project_name, c.customer_name].filter(Boolean).join(" · "),
    picked: quoteLabel,
  },
};

/** The value a record holds for a reference, as a picked choice ({id, text}) or null. */
function pickedFrom(name, record) {
  const id = record?.[name];
  if (!id) return null;
  if (name === "customer_id") {
    return { id, text: record.customer_name ? customerLabel({ name: record.customer_name, company: record.customer_company })
      : "A customer not on this computer" };
  }
  return { id, text: quoteLabel({ quote_number: record.quote_number, project_name: record.quote_project_name }) };
}

function textControl(name, value) {
  const id = `record-field-${name}`;
  const input = LONG.has(name)
    ? h("textarea", { id, name, rows: 2 })
    : h("input", { id, name, type: name === "email" ? "email" : "text", autocomplete: "off" });
  if (/(_amount|_percent)$/.test(name)) input.setAttribute("inputmode", "decimal");
  const placeholder = PLACEHOLDERS.find(([pattern]) => pattern.test(name));
  if (placeholder) input.setAttribute("placeholder", placeholder[1]);
  input.value = value ?? "";
  return {
    input,
    element: input,
    value: () => input.value.trim() || null,
    unresolved: () => false,
    onEdit: (fn) => input.addEventListener("input", fn),
  };
}

/**
 * A combobox (WAI-ARIA 1.2, list autocomplete) over the local records of `entity`: typing
 * lists the matches, ↓/↑ move through them, Enter or a click picks one, Esc closes the list.
 * The picked record's id is the value; the text is only for finding it.
 */
function pickerControl(name, entity, initial, { onPick = () => {} } = {}) {
  const view = CHOICE_VIEWS[entity];
  const id = `record-field-${name}`;
  const input = h("input", {
    id, type: "text", autocomplete: "off", spellcheck: false, role: "combobox", placeholder: view.hint,
    "aria-autocomplete": "list", "aria-expanded": "false", "aria-controls": `${id}-options`,
  });
  const clear = h("button", { type: "button", id: `${id}-clear`, class: "btn btn-small picker-clear",
    "aria-label": `Clear ${formLabel(name).toLowerCase()}` }, "Clear");
  const list = h("ul", { id: `${id}-options`, class: "picker-options", role: "listbox", "aria-label": `Matching ${entity}` });
  const empty = h("p", { id: `${id}-empty`, class: "picker-empty", hidden: true });
  const popup = h("div", { class: "picker-popup", hidden: true }, list, empty);
  const status = h("span", { class: "visually-hidden", "aria-live": "polite" });
  const element = h("div", { class: "picker", "data-entity": entity }, h("div", { class: "picker-row" }, input, clear),
    popup, status);
  const edits = [];
  let picked = initial;
  let choices = [];
  let active = -1;
  let asked = 0; // answers to older lookups are dropped
  let timer = 0;

  function show(choice) {
    picked = choice;
    input.value = choice?.text ?? "";
    clear.hidden = !choice && !input.value;
  }

  function open(on) {
    popup.hidden = !on;
    input.setAttribute("aria-expanded", String(on));
    if (!on) highlight(-1);
  }

  function highlight(index) {
    active = index;
    list.querySelectorAll("[role=option]").forEach((option, i) => option.setAttribute("aria-selected", String(i === index)));
    const option = list.children[index];
    if (option) {
      input.setAttribute("aria-activedescendant", option.id);
      option.scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  /** Ask for the matches of the text; `then` runs with them shown (to highlight one). */
  async function lookup(then = () => {}) {
    const q = picked ? "" : input.value.trim(); // a picked one's text is no search: show all
    const mine = ++asked;
    let answer;
    try {
      answer = await api.choices(entity, q, CHOICES_LIMIT);
    } catch (error) {
      if (mine !== asked) return;
      render([], error.message);
      return;
    }
    if (mine !== asked) return;
    render(answer.choices || [], q ? `No ${singular(entity)} matches “${q}”` : `No ${entity} on this computer yet`);
    if (!popup.hidden) then();
  }

  function render(found, nothing) {
    choices = found;
    replace(list, found.map((choice, i) => {
      const detail = view.detail(choice);
      return h("li", { id: `${id}-option-${i}`, class: "picker-option", role: "option", "aria-selected": "false",
        "data-id": choice.id, onmousedown: (event) => event.preventDefault(), onclick: () => pick(choice) },
      h("span", { class: "option-main" }, view.main(choice)),
      detail && h("span", { class: "option-detail" }, detail));
    }));
    empty.textContent = found.length ? "" : nothing;
    empty.hidden = found.length > 0;
    status.textContent = found.length
      ? `${found.length} ${found.length === 1 ? "match" : "matches"}, use the arrow keys to choose`
      : nothing;
    open(document.activeElement === input);
  }

  /** Forget the lookups under way: their answers would reopen a list the user is done with. */
  function cancel() {
    clearTimeout(timer);
    asked += 1;
  }

  function pick(choice) {
    cancel();
    show(choice ? { id: choice.id, text: view.picked(choice) } : null);
    open(false);
    status.textContent = choice ? `${formLabel(name)}: ${input.value}` : `${formLabel(name)} cleared`;
    edits.forEach((fn) => fn());
    onPick(choice);
  }

  input.addEventListener("input", () => {
    picked = null; // typing searches; only a pick sets the value
    clear.hidden = !input.value;
    edits.forEach((fn) => fn());
    clearTimeout(timer);
    timer = setTimeout(lookup, LOOKUP_DELAY_MS);
  });
  input.addEventListener("click", () => {
    if (popup.hidden) lookup();
  });
  input.addEventListener("blur", () => {
    cancel();
    open(false);
  });
  input.addEventListener("keydown", (event) => {
    const isOpen = !popup.hidden;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      if (!isOpen) return void lookup(() => highlight(step > 0 ? 0 : choices.length - 1));
      if (choices.length) highlight((active + step + choices.length) % choices.length);
    } else if (event.key === "Enter" && isOpen) {
      event.preventDefault(); // picking is not saving
      const choice = choices[active] ?? (choices.length === 1 ? choices[0] : null);
      if (choice) pick(choice);
    } else if (event.key === "Escape" && isOpen) {
      event.preventDefault(); // closes the list, not the dialog
      event.stopPropagation();
      open(false);
    }
  });
  clear.addEventListener("click", () => {
    pick(null);
    input.focus();
  });
  show(initial);

  return {
    input,
    element,
    value: () => picked?.id ?? null,
    /** Text typed but nothing picked: the value would silently be empty. */
    unresolved: () => !picked && Boolean(input.value.trim()),
    onEdit: (fn) => edits.push(fn),
    set: (choice) => pick(choice),
  };
}

// -- the dialog -------------------------------------------------------------------------------

/** One field: its label (with a marker when required), its control, and its message line. */
function fieldBox(name, control, required) {
  const error = h("p", { id: `record-error-${name}`, class: "field-error", hidden: true });
  if (required) control.input.setAttribute("aria-required", "true");
  const box = h("div", { class: LONG.has(name) || name in REFERENCES ? "field field-wide" : "field", "data-field": name },
    h("label", { for: control.input.id }, formLabel(name),
      required && h("span", { class: "required-mark", "aria-hidden": "true" }, " *")),
    control.element, error);
  const field = {
    name,
    control,
    box,
    invalid(message) {
      box.classList.add("field-invalid");
      control.input.setAttribute("aria-invalid", "true");
      control.input.setAttribute("aria-describedby", error.id);
      error.textContent = message;
      error.hidden = false;
    },
    valid() {
      box.classList.remove("field-invalid");
      control.input.removeAttribute("aria-invalid");
      control.input.removeAttribute("aria-describedby");
      error.textContent = "";
      error.hidden = true;
    },
  };
  control.onEdit(() => field.valid()); // the message was about the old value
  return field;
}

/** References first: which customer (or quote) a record belongs to matters most. */
function ordered(fields) {
  return [...fields.filter((name) => name in REFERENCES), ...fields.filter((name) => !(name in REFERENCES))];
}

export function createRecordForm() {
  const title = h("h2", { id: "record-dialog-title", class: "dialog-title" });
  const legend = h("p", { id: "record-required-hint", class: "hint record-hint" },
    h("span", { class: "required-mark", "aria-hidden": "true" }, "*"), " required");
  const fieldsBox = h("div", { class: "record-fields" });
  const error = messageLine("record-error", { live: "assertive" });
  const save = h("button", { type: "submit", id: "record-save", class: "btn btn-primary" }, "Save");
  const cancel = h("button", { type: "button", id: "record-cancel", class: "btn" }, "Cancel");
  const form = h(
    "form",
    { id: "record-form", novalidate: true },
    h("div", { class: "dialog-header" }, title, legend),
    fieldsBox,
    h("div", { class: "dialog-actions" }, error, cancel, save),
  );
  const dialog = h("dialog", { id: "record-dialog", class: "dialog", "aria-labelledby": title.id }, form);
  document.body.append(dialog);
  cancel.addEventListener("click", () => dialog.close());

  let job = null; // {entity, record, fields: [field], saved}

  function showProblems(problems, summary) {
    const bad = job.fields.filter((f) => problems[f.name]);
    bad.forEach((f) => f.invalid(problems[f.name]));
    // A problem with a field the form does not show (a time the host app wrote) goes in the summary.
    const elsewhere = Object.entries(problems).filter(([name]) => !job.fields.some((f) => f.name === name));
    const extra = elsewhere.map(([name, message]) => `${formLabel(name)}: ${message}.`).join(" ");
    error.show([summary, extra].filter(Boolean).join(" "), "error");
    bad[0]?.control.input.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { entity, record, fields } = job;
    fields.forEach((f) => f.valid());
    error.clear();
    const unresolved = Object.fromEntries(fields.filter((f) => f.control.unresolved())
      .map((f) => [f.name, `Choose a ${singular(REFERENCES[f.name])} from the list`]));
    if (Object.keys(unresolved).length) {
      showProblems(unresolved, Object.keys(unresolved).length === 1 ? "Check the highlighted field."
        : "Check the highlighted fields.");
      return;
    }
    const data = {};
    for (const { name, control } of fields) {
      const value = control.value();
      if (!record || value !== (record[name] ?? null)) data[name] = value;
    }
    if (record && Object.keys(data).length === 0) return dialog.close();
    try {
      const answer = await busy(save, () => record ? api.updateRecord(entity, record.id, data) : api.createRecord(entity, data));
      job.saved = answer?.record ?? true;
      dialog.close();
    } catch (failure) {
      if (failure.fields && Object.keys(failure.fields).length) showProblems(failure.fields, failure.message);
      else error.show(failure.message, "error");
    }
  });

  function controlFor(entity, name, record, preset, controls) {
    if (!(name in REFERENCES)) return textControl(name, record?.[name]);
    const initial = record ? pickedFrom(name, record) : preset?.[name] ?? null;
    const onPick = name === "quote_id" && entity === "orders"
      ? (quote) => { // an order is for its quote's customer
        if (quote?.customer_name && controls.customer_id) { // (a customer not on this computer cannot be picked)
          controls.customer_id.set({ id: quote.customer_id, name: quote.customer_name, company: quote.customer_company });
        }
      }
      : undefined;
    return pickerControl(name, REFERENCES[name], initial, { onPick });
  }

  return {
    /**
     * Show the form for `record` (null: a new one); resolves with the saved record or null.
     * `preset` gives a new record's picked references: {customer_id: {id, text}}.
     */
    open(entity, record, fields, { preset = null } = {}) {
      title.textContent = record
        ? `Edit ${singular(entity)} ${recordTitle(entity, record)}`.trim()
        : `Add ${singular(entity)}`;
      const required = new Set(requiredOf(entity));
      legend.hidden = required.size === 0;
      const controls = {};
      const boxes = ordered(fields).map((name) => {
        controls[name] = controlFor(entity, name, record, preset, controls);
        return fieldBox(name, controls[name], required.has(name));
      });
      replace(fieldsBox, boxes.map((f) => f.box));
      error.clear();
      job = { entity, record, fields: boxes, saved: null };
      dialog.showModal();
      boxes[0]?.control.input.focus();
      return new Promise((resolve) => {
        dialog.addEventListener("close", () => resolve(job.saved), { once: true });
      });
    },
  };
}
