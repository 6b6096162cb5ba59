// Record lists for the three entities: search, page, add, edit and delete, so that offline
// work and conflicts can be tried from the window itself. Quotes and orders show their
// customer's name (and an order its quote's number), and a customer's row leads to that
// customer's quotes and orders: the list filtered, with a chip that removes the filter.

import { api } from "./api.js";
import { confirmAction } from "./confirm.js";
import { busy, h, messageLine, replace } from "./dom.js";
import { publish, subscribe } from "./events.js";
import {
  count, customerLabel, dateTime, entityLabel, fieldLabel, recordTitle, relativeTime, sentence, singular, truncate,
} from "./format.js";
import { createRecordForm } from "./record-form.js";
import { createTabs } from "./tabs.js";
import { entities, fieldsOf } from "./vocabulary.js";

const PAGE = 100;
const SEARCH_DELAY_MS = 250;
/** Characters a list cell holds at most; CSS then cuts it to the column's width with "…". */
const CELL_CHARS = 120;
/** Longer texts get their start as a tooltip, so that a cut-off value can still be read. */
const TOOLTIP_CHARS = 500;

/** The customer's name, or what to say when the quote or order has none (or one not here). */
function customerText(record) {
  if (record.customer_name) return record.customer_name;
  return record.customer_id ? "Not on this computer" : "";
}

function quoteText(record) {
  if (record.quote_number) return record.quote_number;
  return record.quote_id ? record.quote_project_name || "No number yet" : "";
}

/** A list column: a field (or a display field the API adds), its heading, and how it shows. */
function column(name, { label = fieldLabel(name), text = (r) => r[name], num = false, minor = false, roomy = false,
  short = false } = {}) {
  return { name, label, text, num, minor, roomy, short };
}

/** The classes that hide a column in narrower windows (app.css): roomy ones first, then minor ones. */
function widthClass(col) {
  return col.roomy ? "col-roomy" : col.minor ? "col-minor" : null;
}

// Minor columns go in a narrow window, roomy ones already in the default-sized one.
const COLUMNS = {
  customers: [column("name"), column("company"), column("email", { label: "E-mail" }), column("phone", { minor: true }),
    column("city"), column("notes", { roomy: true, short: true })],
  quotes: [column("quote_number", { label: "Quote" }), column("customer_name", { label: "Customer", text: customerText }),
    column("project_name", { label: "Project" }), column("status"),
    column("total_amount", { label: "Total", num: true }), column("valid_until", { minor: true })],
  orders: [column("order_number", { label: "Order" }), column("quote_number", { label: "Quote", text: quoteText }),
    column("customer_name", { label: "Customer", text: customerText }), column("status"),
    column("order_date", { minor: true }), column("delivery_date", { label: "Delivery" }),
    column("total_amount", { label: "Total", num: true }), column("payment_status", { label: "Payment", minor: true })],
};

/** The entities whose records each list shows: its own, and the names of those it refers to. */
const SHOWS = { customers: ["customers"], quotes: ["quotes", "customers"], orders: ["orders", "quotes", "customers"] };

function classes(...names) {
  return names.filter(Boolean).join(" ") || null;
}

function cell(col, record) {
  const text = String(col.text(record) ?? "");
  const unknown = text && col.text === customerText && !record.customer_name;
  return h("td", { class: classes(col.num && "num", widthClass(col)) },
    h("span", {
      class: classes("cell", col.short && "cell-short", unknown && "value-empty"),
      title: text.length > 20 ? truncate(text, TOOLTIP_CHARS) : null,
    }, truncate(text, CELL_CHARS)));
}

export function mountRecords(root) {
  const search = h("input", { id: "records-search", type: "search", autocomplete: "off" });
  const add = h("button", { type: "button", id: "record-add", class: "btn btn-primary" }, "Add");
  const chips = h("div", { id: "records-filters", class: "filter-chips", hidden: true });
  const message = messageLine("records-message");
  const range = h("span", { id: "records-range", class: "hint" });
  const prev = h("button", { type: "button", id: "records-prev", class: "btn btn-small" }, "Previous");
  const next = h("button", { type: "button", id: "records-next", class: "btn btn-small" }, "Next");
  const tabsBox = h("div", { class: "records-tabs" });
  const toolbar = h("div", { class: "panel-toolbar" },
    h("label", { for: search.id, class: "visually-hidden" }, "Search records"), search, chips, add);
  replace(root, h("h2", { class: "visually-hidden" }, "Records"), tabsBox);
  const form = createRecordForm();
  // filter: null, or the customer whose records are shown: {field, id, name, text}
  const entityNames = entities();
  const state = Object.fromEntries(entityNames.map((e) => [e,
    { q: "", offset: 0, total: 0, fields: fieldsOf(e), stale: true, filter: null }]));
  const bodies = {};
  let entity = null;
  let visible = false;

  const tabs = createTabs(
    tabsBox,
    entityNames.map((e) => ({ key: e, label: entityLabel(e), id: `records-tab-${e}`, panelId: `records-panel-${e}` })),
    { label: "Record type", onSelect: (key) => switchTo(key) },
  );
  for (const e of entityNames) {
    bodies[e] = h("tbody");
    const head = COLUMNS[e].map((c) => h("th", { scope: "col", class: classes(c.num && "num", widthClass(c)) }, c.label));
    head.push(h("th", { scope: "col", class: "col-minor" }, "Updated"));
    head.push(h("th", { scope: "col", class: "actions" }, h("span", { class: "visually-hidden" }, "Actions")));
    tabs.panels[e].append(h("div", { class: "table-wrap" },
      h("table", { id: `records-${e}`, class: "table records" }, h("thead", {}, h("tr", {}, head)), bodies[e])));
  }
  tabsBox.querySelector("[role=tablist]").after(toolbar, message);
  root.append(h("div", { class: "pager" }, range, prev, next));

  function switchTo(key) {
    entity = key;
    search.value = state[key].q;
    add.textContent = `Add ${singular(key)}`;
    renderFilter();
    message.clear();
    if (visible && state[key].stale) load();
    else renderPager();
  }

  function renderFilter() {
    const { filter } = state[entity];
    search.placeholder = filter ? `Search the ${entity} of ${filter.name}…` : `Search ${entity}…`;
    chips.hidden = !filter;
    replace(chips, filter && h("span", { class: "chip", id: "records-filter", "data-field": filter.field, "data-id": filter.id },
      h("span", { class: "chip-text" }, `Customer: ${filter.name}`),
      h("button", { type: "button", class: "chip-remove", id: "records-filter-remove",
        "aria-label": `Remove the filter: show all ${entity}, not only those of ${filter.name}`,
        title: "Remove the filter", onclick: unfilter }, "×")));
  }

  /** Show the quotes (or orders) of one customer. */
  function showCustomers(target, customer) {
    Object.assign(state[target], {
      filter: {
        field: "customer_id", id: customer.id, name: customer.name || customerLabel(customer), text: customerLabel(customer),
      },
      q: "", offset: 0, stale: true,
    });
    tabs.select(target);
  }

  function unfilter() {
    Object.assign(state[entity], { filter: null, offset: 0 });
    renderFilter();
    search.focus();
    load();
  }

  async function load() {
    const s = state[entity];
    const shown = entity;
    s.stale = false;
    const params = { q: s.q, limit: PAGE, offset: s.offset };
    if (s.filter) params[s.filter.field] = s.filter.id;
    try {
      const answer = await api.records(shown, params);
      Object.assign(s, { total: answer.total ?? 0, fields: answer.fields?.length ? answer.fields : s.fields });
      renderRows(shown, answer.records || []);
      if (shown === entity) message.clear();
    } catch (error) {
      s.stale = true;
      if (shown === entity) message.show(error.message, "error");
    }
    renderPager();
  }

  function emptyRow(e) {
    const span = COLUMNS[e].length + 2;
    const { q, filter } = state[e];
    const which = filter ? `${e} of ${filter.name}` : e;
    const text = q
      ? h("td", { colspan: span, class: "empty" }, `No ${which} match “${q}”`)
      : h("td", { colspan: span, class: "empty" }, `No ${which} yet — `,
          h("button", { type: "button", class: "link", onclick: () => edit(null) }, "add one"));
    return h("tr", {}, text);
  }

  function actions(e, record) {
    const title = recordTitle(e, record);
    const button = (action, label, ariaLabel, onclick, extra = "") => h("button", {
      type: "button", class: classes("btn btn-small", extra), "data-action": action, "data-id": record.id,
      "aria-label": ariaLabel, onclick }, label);
    return h("td", { class: "actions" }, h("div", { class: "row-actions" },
      button("edit", "Edit", `Edit ${title}`, () => edit(record)),
      e === "customers" && button("quotes", "Quotes", `Quotes of ${title}`, () => showCustomers("quotes", record)),
      e === "customers" && button("orders", "Orders", `Orders of ${title}`, () => showCustomers("orders", record)),
      button("delete", "Delete", `Delete ${title}`, (event) => remove(record, event.currentTarget), "btn-danger-quiet")));
  }

  function renderRows(e, records) {
    if (!records.length) {
      replace(bodies[e], emptyRow(e));
      return;
    }
    replace(bodies[e], records.map((record) => h("tr", { "data-id": record.id },
      COLUMNS[e].map((col) => cell(col, record)),
      h("td", { class: "nowrap col-minor", title: dateTime(record.updated_at) }, relativeTime(record.updated_at)),
      actions(e, record))));
  }

  function renderPager() {
    const s = state[entity];
    range.textContent = s.total ? `${count(s.offset + 1)}–${count(Math.min(s.offset + PAGE, s.total))} of ${count(s.total)}` : "";
    prev.hidden = next.hidden = s.total <= PAGE;
    prev.disabled = s.offset === 0;
    next.disabled = s.offset + PAGE >= s.total;
  }

  async function edit(record) {
    const { filter } = state[entity];
    // A new quote or order added while a customer's are shown is that customer's.
    const preset = !record && filter ? { [filter.field]: { id: filter.id, text: filter.text } } : null;
    const saved = await form.open(entity, record, state[entity].fields, { preset });
    if (saved) changed(sentence(`Saved ${recordTitle(entity, saved === true ? record : saved) || "the record"}`));
  }

  async function remove(record, button) {
    const name = recordTitle(entity, record) || record.id;
    const question = `Delete ${singular(entity)} “${name}”? It will also be deleted on the server at the next sync.`;
    if (!(await confirmAction(question))) return;
    try {
      await busy(button, () => api.deleteRecord(entity, record.id));
      changed(sentence(`Deleted ${name}`));
    } catch (error) {
      message.show(error.message, "error");
    }
  }

  function changed(text) {
    // Quotes and orders show customers' names and quotes' numbers: they may all have changed.
    for (const e of entityNames) state[e].stale = true;
    load().then(() => message.show(text, "ok"));
    publish({ type: "records-changed", entity, source: "records" });
  }

  let searchTimer = 0;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      Object.assign(state[entity], { q: search.value.trim(), offset: 0 });
      load();
    }, SEARCH_DELAY_MS);
  });
  add.addEventListener("click", () => edit(null));
  prev.addEventListener("click", () => page(-PAGE));
  next.addEventListener("click", () => page(PAGE));

  function page(step) {
    const s = state[entity];
    s.offset = Math.max(0, s.offset + step);
    load();
  }

  subscribe((event) => {
    if (event.source === "records") return; // our own change, already reloaded
    const hit = entityNames.filter((e) => !event.entity || SHOWS[e].includes(event.entity));
    for (const e of hit) state[e].stale = true;
    if (visible && hit.includes(entity)) load();
  }, ["completed", "records-changed"]);

  // Whatever ended while the event stream was not open (before it first opened, or while
  // it was down) went unseen: the lists may be out of date, so read them again.
  subscribe((event) => {
    if (event.state !== "open") return;
    for (const e of entityNames) state[e].stale = true;
    if (visible) load();
  }, ["stream"]);

  tabs.select(entityNames[0]);
  return {
    show(on) {
      visible = on;
      if (on && state[entity].stale) load();
    },
  };
}
