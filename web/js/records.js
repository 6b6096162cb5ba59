// Record lists for the three entities: search, page, add, edit and delete, so that offline
// work and conflicts can be tried from the window itself.

import { api } from "./api.js";
import { confirmAction } from "./confirm.js";
import { busy, h, messageLine, replace } from "./dom.js";
import { publish, subscribe } from "./events.js";
import { count, dateTime, entityLabel, ENTITIES, fieldLabel, FIELDS, recordTitle, relativeTime } from "./format.js";
import { createRecordForm } from "./record-form.js";
import { createTabs } from "./tabs.js";

const PAGE = 100;
const SEARCH_DELAY_MS = 250;
const COLUMNS = {
  customers: ["name", "company", "email", "phone", "city"],
  quotes: ["quote_number", "project_name", "status", "total_amount", "valid_until"],
  orders: ["order_number", "status", "order_date", "delivery_date", "total_amount", "payment_status"],
};

export function mountRecords(root) {
  const search = h("input", { id: "records-search", type: "search", autocomplete: "off" });
  const add = h("button", { type: "button", id: "record-add", class: "btn btn-primary" }, "Add");
  const message = messageLine("records-message");
  const range = h("span", { id: "records-range", class: "hint" });
  const prev = h("button", { type: "button", id: "records-prev", class: "btn btn-small" }, "Previous");
  const next = h("button", { type: "button", id: "records-next", class: "btn btn-small" }, "Next");
  const tabsBox = h("div", { class: "records-tabs" });
  const toolbar = h("div", { class: "panel-toolbar" },
    h("label", { for: search.id, class: "visually-hidden" }, "Search records"), search, add);
  replace(root, h("h2", { class: "visually-hidden" }, "Records"), tabsBox);
  const form = createRecordForm();
  const state = Object.fromEntries(ENTITIES.map((e) => [e, { q: "", offset: 0, total: 0, fields: FIELDS[e], stale: true }]));
  const bodies = {};
  let entity = null;
  let visible = false;

  const tabs = createTabs(
    tabsBox,
    ENTITIES.map((e) => ({ key: e, label: entityLabel(e), id: `records-tab-${e}`, panelId: `records-panel-${e}` })),
    { label: "Record type", onSelect: (key) => switchTo(key) },
  );
  for (const e of ENTITIES) {
    bodies[e] = h("tbody");
    const head = [...COLUMNS[e].map(fieldLabel), "Updated"].map((c) => h("th", { scope: "col" }, c));
    head.push(h("th", { scope: "col", class: "actions" }, h("span", { class: "visually-hidden" }, "Actions")));
    tabs.panels[e].append(h("div", { class: "table-wrap" },
      h("table", { id: `records-${e}`, class: "table records" }, h("thead", {}, h("tr", {}, head)), bodies[e])));
  }
  tabsBox.querySelector("[role=tablist]").after(toolbar, message);
  root.append(h("div", { class: "pager" }, range, prev, next));

  function switchTo(key) {
    entity = key;
    search.value = state[key].q;
    search.placeholder = `Search ${key}…`;
    add.textContent = `Add ${entityLabel(key).replace(/s$/, "").toLowerCase()}`;
    message.clear();
    if (visible && state[key].stale) load();
    else renderPager();
  }

  async function load() {
    const s = state[entity];
    const shown = entity;
    s.stale = false;
    try {
      const answer = await api.records(shown, { q: s.q, limit: PAGE, offset: s.offset });
      Object.assign(s, { total: answer.total ?? 0, fields: answer.fields?.length ? answer.fields : s.fields });
      renderRows(shown, answer.records || []);
      if (shown === entity) message.clear();
    } catch (error) {
      s.stale = true;
      if (shown === entity) message.show(error.message, "error");
    }
    renderPager();
  }

  function renderRows(e, records) {
    const span = COLUMNS[e].length + 2;
    if (!records.length) {
      const empty = state[e].q
        ? h("td", { colspan: span, class: "empty" }, `No ${e} match “${state[e].q}”`)
        : h("td", { colspan: span, class: "empty" }, `No ${e} yet — `,
            h("button", { type: "button", class: "link", onclick: () => edit(null) }, "add one"));
      replace(bodies[e], h("tr", {}, empty));
      return;
    }
    replace(bodies[e], records.map((record) => h("tr", { "data-id": record.id },
      COLUMNS[e].map((name) => h("td", {}, record[name] ?? "")),
      h("td", { class: "nowrap", title: dateTime(record.updated_at) }, relativeTime(record.updated_at)),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "btn btn-small", "data-action": "edit", "data-id": record.id,
          "aria-label": `Edit ${recordTitle(e, record)}`, onclick: () => edit(record) }, "Edit"),
        h("button", { type: "button", class: "btn btn-small btn-danger-quiet", "data-action": "delete",
          "data-id": record.id, "aria-label": `Delete ${recordTitle(e, record)}`,
          onclick: (event) => remove(record, event.currentTarget) }, "Delete")))));
  }

  function renderPager() {
    const s = state[entity];
    range.textContent = s.total ? `${count(s.offset + 1)}–${count(Math.min(s.offset + PAGE, s.total))} of ${count(s.total)}` : "";
    prev.hidden = next.hidden = s.total <= PAGE;
    prev.disabled = s.offset === 0;
    next.disabled = s.offset + PAGE >= s.total;
  }

  async function edit(record) {
    const saved = await form.open(entity, record, state[entity].fields);
    if (saved) changed(`Saved ${recordTitle(entity, saved === true ? record : saved) || "the record"}.`);
  }

  async function remove(record, button) {
    const name = recordTitle(entity, record) || record.id;
    if (!(await confirmAction(`Delete ${entityLabel(entity).replace(/s$/, "").toLowerCase()} “${name}”? It will also be deleted on the server at the next sync.`))) return;
    try {
      await busy(button, () => api.deleteRecord(entity, record.id));
      changed(`Deleted ${name}.`);
    } catch (error) {
      message.show(error.message, "error");
    }
  }

  function changed(text) {
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
    const hit = event.entity ? [event.entity] : ENTITIES;
    for (const e of hit) if (state[e]) state[e].stale = true;
    if (visible && hit.includes(entity)) load();
  }, ["completed", "records-changed"]);

  tabs.select(ENTITIES[0]);
  return {
    show(on) {
      visible = on;
      if (on && state[entity].stale) load();
    },
  };
}
