// The conflict dialog: the open conflicts on the left, the selected one compared field by
// field on the right, and "Keep local", "Keep remote" or "Use my choices" to settle it.

import { api } from "./api.js";
import { busy, h, messageLine, replace } from "./dom.js";
import { publish, subscribe } from "./events.js";
import { comparison } from "./conflict-table.js";
import { entityLabel, plural, recordTitle, relativeTime } from "./format.js";

export function mountConflicts() {
  const list = h("ul", { id: "conflict-list", class: "conflict-list", "aria-label": "Open conflicts" });
  const detail = h("div", { id: "conflict-detail", class: "conflict-detail" });
  const message = messageLine("conflict-message");
  const keepLocal = h("button", { type: "button", id: "resolve-local", class: "btn" }, "Keep local");
  const keepRemote = h("button", { type: "button", id: "resolve-remote", class: "btn" }, "Keep remote");
  const merged = h("button", { type: "button", id: "resolve-merged", class: "btn btn-primary" }, "Use my choices");
  const actions = h("div", { class: "dialog-actions" }, message, keepLocal, keepRemote, merged);
  const close = h("button", { type: "button", id: "conflict-close", class: "btn btn-icon", "aria-label": "Close" }, "×");
  const dialog = h(
    "dialog",
    { id: "conflict-dialog", class: "dialog dialog-wide", "aria-labelledby": "conflict-title" },
    h("div", { class: "dialog-header" }, h("h2", { id: "conflict-title", class: "dialog-title" }, "Conflicts"), close),
    h("div", { class: "conflict-body" }, list, detail),
    actions,
  );
  document.body.append(dialog);
  close.addEventListener("click", () => dialog.close());

  let conflicts = [];
  let selectedId = null;
  let current = null; // the comparison on show
  let shownId = null;

  async function load() {
    try {
      conflicts = (await api.conflicts()).conflicts || [];
    } catch (error) {
      conflicts = [];
      renderList();
      replace(detail);
      message.show(`Could not load the conflicts: ${error.message}`, "error");
      return;
    }
    if (!conflicts.some((c) => c.id === selectedId)) selectedId = conflicts[0]?.id ?? null;
    renderList();
    if (!current || shownId !== selectedId) renderDetail(); // keep the user's picks on a refresh
  }

  function renderList() {
    list.hidden = conflicts.length === 0;
    replace(
      list,
      conflicts.map((c) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "conflict-item",
              "data-id": c.id,
              "aria-current": c.id === selectedId ? "true" : null,
              onclick: () => select(c.id),
            },
            h("span", { class: "conflict-item-title" }, recordTitle(c.entity, c.remote || c.local) || c.record_id),
            h("span", { class: "conflict-item-meta" },
              `${entityLabel(c.entity)} · ${plural((c.fields || []).length, "field")} · ${relativeTime(c.created_at)}`),
          ),
        ),
      ),
    );
  }

  function renderDetail() {
    const conflict = conflicts.find((c) => c.id === selectedId);
    current = conflict ? comparison(conflict) : null;
    shownId = conflict ? conflict.id : null;
    for (const button of [keepLocal, keepRemote, merged]) {
      button.disabled = !conflict;
      button.hidden = !conflict;
    }
    if (!conflict) {
      replace(detail, h("p", { id: "conflict-empty", class: "empty" }, "No conflicts"));
      return;
    }
    merged.disabled = Boolean(current.deletion) || current.differing.length === 0;
    // With a deletion on one side, "keep local/remote" means "delete it" or "keep it": say which.
    const labels = DELETION_LABELS[current.deletion] || DELETION_LABELS.none;
    keepLocal.textContent = labels.local;
    keepRemote.textContent = labels.remote;
    const note = current.deletion
      ? `This record was deleted ${current.deletion === "local" ? "on this computer" : "on the server"} and changed on the other side. Keep one side.`
      : "Pick a value for each field that differs, or keep one side as a whole.";
    replace(
      detail,
      h("h3", { class: "conflict-heading" }, `${entityLabel(conflict.entity)}: ${recordTitle(conflict.entity, conflict.remote || conflict.local)}`),
      h("p", { class: "hint" }, note),
      current.table,
    );
  }

  function select(id) {
    selectedId = id;
    message.clear();
    renderList();
    renderDetail();
    list.querySelector(`[data-id="${CSS.escape(String(id))}"]`)?.focus();
  }

  async function resolve(use, button) {
    const conflict = conflicts.find((c) => c.id === selectedId);
    if (!conflict || !current) return;
    const data = use === "merged" ? current.choices() : undefined;
    try {
      await busy(button, () => api.resolve(conflict.id, use, data));
    } catch (error) {
      message.show(error.message, "error");
      return;
    }
    const label = current.deletion
      ? (current.deletion === use ? "the record is deleted" : `the ${use === "local" ? "local" : "server's"} version is kept`)
      : { local: "kept the local version", remote: "kept the server's version", merged: "merged" }[use];
    message.show(`Resolved: ${label}.`, "ok");
    publish({ type: "conflicts-changed" });
    publish({ type: "records-changed", entity: conflict.entity });
    selectedId = null;
    current = null;
    await load();
  }

  keepLocal.addEventListener("click", () => resolve("local", keepLocal));
  keepRemote.addEventListener("click", () => resolve("remote", keepRemote));
  merged.addEventListener("click", () => resolve("merged", merged));
  subscribe(() => dialog.open && load(), ["conflict", "completed"]);

  return {
    open() {
      message.clear();
      if (!dialog.open) dialog.showModal();
      load();
    },
  };
}

const DELETION_LABELS = {
  none: { local: "Keep local", remote: "Keep remote" },
  local: { local: "Delete it (as on this computer)", remote: "Keep it (the server's version)" },
  remote: { local: "Keep it (this computer's version)", remote: "Delete it (as on the server)" },
};
