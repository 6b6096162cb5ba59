// The status indicator in the header: connection state, last sync, pending changes and
// open conflicts. It polls GET /api/status and refreshes early on sync events; every answer
// is published as a `status` event so that other components need not poll as well.

import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { publish, subscribe } from "./events.js";
import { dateTime, entityLabel, relativeTime } from "./format.js";
import { entities } from "./vocabulary.js";

const POLL_MS = 5000;
const EARLY_MS = 250; // coalesce a burst of events into one refresh
const REFRESH_ON = ["started", "completed", "failed", "conflict", "conflicts-changed", "records-changed"];

/** Build the indicator into `root`; `openConflicts()` opens the conflict dialog. */
export function mountStatus(root, { openConflicts }) {
  const text = h("span", { id: "status-text", class: "status-text", "aria-live": "polite" }, "Checking…");
  const detail = h("span", { id: "status-detail", class: "status-detail", hidden: true });
  const indicator = h(
    "div",
    { id: "status-indicator", class: "status-indicator", "data-state": "offline" },
    h("span", { class: "status-dot", "aria-hidden": "true" }),
    text,
    detail,
  );
  const lastSync = h("span", { id: "last-sync" }, "never");
  const pending = h("span", { id: "pending-count", class: "count" }, "0");
  const conflicts = h("span", { id: "conflict-count", class: "count" }, "0");
  const conflictWord = h("span", {}, " open conflicts");
  const button = h(
    "button",
    { type: "button", id: "open-conflicts", class: "btn btn-small status-conflicts", onclick: openConflicts },
    conflicts,
    conflictWord,
  );
  replace(
    root,
    indicator,
    h("span", { class: "status-item" }, "Last sync ", lastSync),
    h("span", { class: "status-item" }, pending, " pending"),
    button,
  );

  function show(status) {
    indicator.dataset.state = status.state;
    text.textContent = stateText(status);
    const checked = status.connection?.checked_at;
    const latency = status.connection?.latency_ms;
    indicator.title = [checked && `Checked ${relativeTime(checked)}`, latency != null && `${latency} ms`]
      .filter(Boolean)
      .join(", ");
    const why = stateDetail(status);
    detail.textContent = why;
    detail.title = why;
    detail.hidden = !why;

    const last = status.last_sync;
    lastSync.textContent = last ? relativeTime(last.finished_at) : "never";
    lastSync.title = last ? `${entityLabel(last.entity)}, ${last.status}, ${dateTime(last.finished_at)}` : "";

    const pendingTotal = entities().reduce((sum, e) => sum + (status.entities?.[e]?.pending || 0), 0);
    pending.textContent = String(pendingTotal);
    const open = status.open_conflicts || 0;
    conflicts.textContent = String(open);
    conflictWord.textContent = open === 1 ? " open conflict" : " open conflicts";
    button.classList.toggle("has-conflicts", open > 0);
  }

  function showUnreachable(error) {
    indicator.dataset.state = "error";
    text.textContent = error.status ? "Error" : "Service unreachable";
    detail.textContent = error.message;
    detail.title = error.message;
    detail.hidden = false;
  }

  let timer = 0;
  let inFlight = false;
  async function refresh() {
    clearTimeout(timer);
    if (inFlight) return;
    inFlight = true;
    try {
      const status = await api.status();
      show(status);
      publish({ type: "status", status });
    } catch (error) {
      showUnreachable(error);
      publish({ type: "status-error", error });
    } finally {
      inFlight = false;
      timer = setTimeout(refresh, POLL_MS);
    }
  }

  subscribe((event) => {
    if (event.type === "stream" && event.state !== "open") return;
    clearTimeout(timer);
    timer = setTimeout(refresh, EARLY_MS);
  }, [...REFRESH_ON, "stream"]);

  refresh();
  return { refresh };
}

function stateText(status) {
  switch (status.state) {
    case "online":
      return "Online";
    case "syncing": {
      const names = (status.syncing || []).map(entityLabel).join(", ");
      return names ? `Syncing ${names.toLowerCase()}…` : "Syncing…";
    }
    case "error":
      if (status.service?.state === "failed") return "Sync service stopped";
      return status.connection?.state === "refused" ? "Cannot sync" : "Sync error";
    default:
      return status.connection?.state === "unconfigured" ? "Not configured" : "Offline";
  }
}

function stateDetail(status) {
  const connection = status.connection || {};
  // What supervision says (restarted at 10:42, or left down with what to do) comes first.
  if (status.service?.message) return status.service.message;
  // An external broker that is not answering: syncs wait for it.
  if (status.broker?.detail) return status.broker.detail;
  if (status.state === "offline") {
    return connection.state === "unconfigured" ? "Add the server address and key in Settings" : connection.detail || "";
  }
  if (status.state === "error" && connection.state === "refused") return connection.detail || "";
  if (status.state === "error") {
    const failed = entities().map((e) => status.entities?.[e]?.last_run).find((run) => run?.error);
    return failed ? `${entityLabel(failed.entity)}: ${failed.error}` : connection.detail || "";
  }
  return "";
}
