// The field-by-field comparison of one conflict: this computer's version beside the
// server's, differing fields highlighted, the truly conflicting ones (changed on both
// sides) emphasised, and a local/remote radio pair for every field that differs.

import { h } from "./dom.js";
import { fieldLabel } from "./format.js";
import { fieldsOf } from "./vocabulary.js";

const META = new Set(["id", "version", "base_version", "created_at", "updated_at", "deleted_at"]);

function same(a, b) {
  return (a ?? null) === (b ?? null);
}

/** The data fields to compare, in the entity's own order, then any others the records hold. */
function fieldNames(conflict) {
  const known = fieldsOf(conflict.entity);
  const seen = new Set(known);
  const extra = [];
  for (const record of [conflict.local, conflict.remote, conflict.base]) {
    for (const name of Object.keys(record || {})) {
      if (seen.has(name) || META.has(name)) continue;
      seen.add(name);
      extra.push(name);
    }
  }
  return [...known, ...extra];
}

/** Which side to preselect: the side that changed since the last agreed version. */
function preferred(conflict, name) {
  const base = conflict.base;
  if (base && same(conflict.local?.[name], base[name])) return "remote";
  return "local";
}

const LONG_VALUE = 160; // characters shown before a long value folds away

/** A value as the comparison shows it: "—" when empty; a long text folded, openable. */
function valueText(shown) {
  if (shown.length <= LONG_VALUE) return h("span", { class: shown === "—" ? "value value-empty" : "value" }, shown);
  return h("details", { class: "value value-long" },
    h("summary", {}, `${shown.slice(0, LONG_VALUE).trimEnd()}… (${shown.length.toLocaleString()} characters)`),
    h("div", { class: "value-full" }, shown));
}

function valueCell(value, { name, side, choosable, checked }) {
  const shown = value === null || value === undefined || value === "" ? "—" : String(value);
  const text = valueText(shown);
  if (!choosable) return h("td", {}, text);
  const radio = h("input", { type: "radio", name: `choice-${name}`, value: side, checked });
  radio.id = `choice-${name}-${side}`;
  return h("td", { class: "choosable" }, h("label", { for: radio.id, class: "choice" }, radio, text));
}

/**
 * Build the comparison for `conflict`. Returns {table, differing, deletion, choices()}:
 * `deletion` says a side deleted the record (no field merge then), `choices()` gives the
 * chosen value of every differing field.
 */
export function comparison(conflict) {
  const local = conflict.local || {};
  const remote = conflict.remote || {};
  const conflicting = new Set(conflict.fields || []);
  const deletion = !conflict.local || Boolean(local.deleted_at) ? "local" : remote.deleted_at ? "remote" : null;
  const differing = [];
  const rows = fieldNames(conflict).map((name) => {
    const differs = !same(local[name], remote[name]);
    if (differs) differing.push(name);
    const choosable = differs && !deletion;
    const pick = preferred(conflict, name);
    const classes = [differs && "differs", conflicting.has(name) && "conflicting"].filter(Boolean).join(" ");
    return h(
      "tr",
      { class: classes || null, "data-field": name },
      h("th", { scope: "row" }, fieldLabel(name), conflicting.has(name) && h("span", { class: "badge" }, "conflict")),
      valueCell(conflict.local ? local[name] : null, { name, side: "local", choosable, checked: pick === "local" }),
      valueCell(remote[name], { name, side: "remote", choosable, checked: pick === "remote" }),
    );
  });
  const table = h(
    "table",
    { id: "conflict-table", class: "table compare" },
    h("caption", { class: "visually-hidden" }, "This computer's version and the server's, field by field"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"),
      h("th", { scope: "col" }, deletion === "local" ? "This computer (local): deleted" : "This computer (local)"),
      h("th", { scope: "col" }, deletion === "remote" ? "Server (remote): deleted" : "Server (remote)"))),
    h("tbody", {}, rows),
  );

  function choices() {
    const data = {};
    for (const name of differing) {
      const side = table.querySelector(`input[name="choice-${CSS.escape(name)}"]:checked`)?.value || "local";
      data[name] = (side === "remote" ? remote : local)[name] ?? null;
    }
    return data;
  }
  return { table, differing, deletion, choices };
}
