// The add / edit dialog for one record: one input per editable field the API lists.
// On edit only the fields the user changed are sent, so that an untouched field can never
// turn into a conflict with someone else's change to it.

import { api } from "./api.js";
import { busy, h, messageLine, replace } from "./dom.js";
import { entityLabel, fieldLabel, recordTitle } from "./format.js";

const LONG = new Set(["notes", "address"]);
const DECIMAL = /(_amount|_percent)$/;
const DATE = /(_date|valid_until)$/;

function singular(entity) {
  return entityLabel(entity).replace(/s$/, "").toLowerCase();
}

function control(name) {
  const id = `record-field-${name}`;
  if (LONG.has(name)) return h("textarea", { id, name, rows: 2 });
  const input = h("input", { id, name, type: name === "email" ? "email" : "text", autocomplete: "off" });
  if (DECIMAL.test(name)) input.setAttribute("inputmode", "decimal");
  if (DATE.test(name)) input.setAttribute("placeholder", "YYYY-MM-DD");
  return input;
}

export function createRecordForm() {
  const title = h("h2", { id: "record-dialog-title", class: "dialog-title" });
  const fieldsBox = h("div", { class: "record-fields" });
  const error = messageLine("record-error", { live: "assertive" });
  const save = h("button", { type: "submit", id: "record-save", class: "btn btn-primary" }, "Save");
  const cancel = h("button", { type: "button", id: "record-cancel", class: "btn" }, "Cancel");
  const form = h(
    "form",
    { id: "record-form", novalidate: true },
    h("div", { class: "dialog-header" }, title),
    fieldsBox,
    h("div", { class: "dialog-actions" }, error, cancel, save),
  );
  const dialog = h("dialog", { id: "record-dialog", class: "dialog", "aria-labelledby": title.id }, form);
  document.body.append(dialog);
  cancel.addEventListener("click", () => dialog.close());

  let job = null; // {entity, record, fields, done}

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { entity, record, fields } = job;
    const data = {};
    for (const name of fields) {
      const value = form.elements.namedItem(name).value.trim() || null;
      if (!record || value !== (record[name] ?? null)) data[name] = value;
    }
    if (record && Object.keys(data).length === 0) return dialog.close();
    try {
      const answer = await busy(save, () =>
        record ? api.updateRecord(entity, record.id, data) : api.createRecord(entity, data),
      );
      job.saved = answer?.record ?? true;
      dialog.close();
    } catch (failure) {
      error.show(failure.message, "error");
    }
  });

  return {
    /** Show the form for `record` (null: a new one); resolves with the saved record or null. */
    open(entity, record, fields) {
      title.textContent = record
        ? `Edit ${singular(entity)} ${recordTitle(entity, record)}`.trim()
        : `Add ${singular(entity)}`;
      replace(
        fieldsBox,
        fields.map((name) => {
          const input = control(name);
          input.value = record?.[name] ?? "";
          return h("div", { class: LONG.has(name) ? "field field-wide" : "field" },
            h("label", { for: input.id }, fieldLabel(name)), input);
        }),
      );
      error.clear();
      job = { entity, record, fields, saved: null };
      dialog.showModal();
      fieldsBox.querySelector("input, textarea")?.focus();
      return new Promise((resolve) => {
        dialog.addEventListener("close", () => resolve(job.saved), { once: true });
      });
    },
  };
}
