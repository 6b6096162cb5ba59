// Sync history: the recent runs with their outcome and counts, and the totals line.

import { api } from "./api.js";
import { busy, h, messageLine, replace } from "./dom.js";
import { subscribe } from "./events.js";
import { count, dateTime, entityLabel, plural, relativeTime } from "./format.js";

const LIMIT = 50;
const COLUMNS = ["Time", "Entity", "Direction", "Outcome", "Pushed", "Pulled", "Conflicts", "Rejected", "Error"];

export function mountHistory(root) {
  const totals = h("p", { id: "history-totals", class: "totals" });
  const refresh = h("button", { type: "button", id: "history-refresh", class: "btn btn-small" }, "Refresh");
  const message = messageLine("history-message");
  const body = h("tbody");
  const table = h(
    "table",
    { id: "history-table", class: "table history" },
    h("caption", { class: "visually-hidden" }, "Recent sync runs, newest first"),
    h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col", class: numeric(c) ? "num" : null }, c)))),
    body,
  );
  replace(
    root,
    h("div", { class: "panel-toolbar" }, h("h2", { class: "panel-title" }, "Recent runs"), totals, refresh),
    message,
    h("div", { class: "table-wrap" }, table),
  );

  let visible = false;
  let stale = true;

  async function load() {
    stale = false;
    try {
      const answer = await api.history(LIMIT);
      message.clear();
      render(answer.runs || [], answer.totals);
    } catch (error) {
      message.show(`Could not load the history: ${error.message}`, "error");
    }
  }

  function render(runs, sums) {
    totals.textContent = sums
      ? [plural(sums.runs, "run"), `${count(sums.completed)} completed`, `${count(sums.failed)} failed`,
        `${count(sums.pushed)} records pushed`, `${count(sums.pulled)} pulled`].join(" · ")
      : "";
    if (!runs.length) {
      replace(body, h("tr", {}, h("td", { colspan: COLUMNS.length, class: "empty" }, "No runs yet")));
      return;
    }
    replace(body, runs.map(row));
  }

  refresh.addEventListener("click", () => busy(refresh, load));
  subscribe(() => (visible ? load() : (stale = true)), ["completed", "failed"]);

  return {
    /** Called by the tab bar: load when shown, and again on new runs while shown. */
    show(on) {
      visible = on;
      if (on && stale) load();
    },
  };
}

function numeric(column) {
  return ["Pushed", "Pulled", "Conflicts", "Rejected"].includes(column);
}

function row(run) {
  const when = run.finished_at || run.started_at;
  return h(
    "tr",
    { "data-run-id": run.run_id, "data-status": run.status },
    h("td", { class: "nowrap", title: relativeTime(when) }, dateTime(when)),
    h("td", {}, entityLabel(run.entity)),
    h("td", {}, run.direction || ""),
    h("td", {}, h("span", { class: `outcome outcome-${run.status}` }, run.status)),
    h("td", { class: "num" }, count(run.pushed)),
    h("td", { class: "num" }, count(run.pulled)),
    h("td", { class: "num" }, count(run.conflicts)),
    h("td", { class: "num" }, count(run.rejected)),
    h("td", { class: "error-cell" }, run.error || ""),
  );
}
