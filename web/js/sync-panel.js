// The sync panel: a card per entity and one for "All", driven by the progress events.
//
// Each click asks for a sync under a request id of its own, made here before the request is
// sent (so that no event can arrive before the page knows the id). Every event of every run
// that serves a request lists its id in `requests`: a run that several requests joined lists
// them all, and so do the later runs of an "all" chain. The cards follow only the runs of
// this page's own requests; another desktop's, the scheduler's or the CLI's runs on the same
// broker leave them as they are (the header's status and each card's counts still show what
// they did). The "All" card follows its request's chain, in the order the UI API gives for
// "all" (customers, then quotes, then orders: spec §6.6), each entity a run of its own.

import { api } from "./api.js";
import { busy, h, replace } from "./dom.js";
import { subscribe } from "./events.js";
import { count, dateTime, entityLabel, relativeTime, timeLeft } from "./format.js";
import { createSyncCard } from "./sync-card.js";
import { allEntities, entities } from "./vocabulary.js";

const STALE_MS = 10000; // a run with no event for this long is checked against /api/status
const RUN_EVENTS = ["started", "progress", "conflict", "completed", "failed"];

/** A new request id: 32 lowercase hex digits, as the UI API asks. */
function newRequestId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function mountSyncPanel(root) {
  const cards = {};
  for (const entity of entities()) {
    cards[entity] = createSyncCard(entity, {
      title: entityLabel(entity),
      buttonLabel: `Sync ${entity}`,
      onSync: (direction, button) => start([entity], direction, button),
    });
  }
  cards.all = createSyncCard("all", { title: "All", buttonLabel: "Sync all", onSync: (d, b) => start([], d, b) });
  const rejected = h("section", { id: "rejected-list", class: "rejected", hidden: true, "aria-live": "polite" });
  replace(
    root,
    h("h2", { id: "sync-heading", class: "section-title" }, "Sync"),
    h("div", { class: "sync-grid" }, Object.values(cards).map((card) => card.el)),
    rejected,
  );

  // request id -> {entities (in order), heard: entities with an event so far, ended: entity ->
  // its end event}: this page's requests whose runs have not all ended yet
  const own = new Map();
  const seen = {}; // entity -> {runId, requests, at}: this page's run last heard of
  let allRequest = null; // the id of the latest "Sync all" request: the "All" card follows it

  async function start(wanted, direction, button) {
    const card = wanted.length ? cards[wanted[0]] : cards.all;
    const requestId = newRequestId();
    const request = { entities: wanted.length ? wanted : allEntities(), heard: new Set(), ended: new Map() };
    own.set(requestId, request);
    if (!wanted.length) allRequest = requestId;
    try {
      const answer = await busy(button, () => api.sync(wanted, direction, requestId));
      if (answer.entities?.length) request.entities = answer.entities;
      // The runs may have begun, or even ended, before this answer came: queue only what has not.
      const waiting = request.entities.filter((entity) => !request.heard.has(entity));
      for (const entity of wanted.length || request.heard.size ? waiting : ["all", ...waiting]) {
        if (cards[entity].state() !== "running") cards[entity].queued();
      }
      const first = request.entities[0];
      if (!request.heard.has(first)) seen[first] = { runId: answer.run_id, requests: [requestId], at: Date.now() };
    } catch (error) {
      own.delete(requestId);
      if (allRequest === requestId) allRequest = null;
      card.showError(error.message);
    }
  }

  /** The ids of this page's requests that `event`'s run serves and that still wait for it. */
  function servedRequests(event) {
    return (event.requests || []).filter((id) => {
      const request = own.get(id);
      return request && request.entities.includes(event.entity) && !request.ended.has(event.entity);
    });
  }

  function onRunEvent(event) {
    const card = cards[event.entity];
    const ids = servedRequests(event);
    if (!card || !ids.length) return; // not a run of this page's
    seen[event.entity] = { runId: event.run_id, requests: ids, at: Date.now() };
    const ended = event.type === "completed" || event.type === "failed";
    if (ended) {
      card.finished(outcome(event), summary(event), event.type === "failed" ? event.error || "Sync failed" : "");
    } else {
      card.running({ done: event.done, total: event.total, perSecond: event.rate, etaS: event.eta_s });
    }
    for (const id of ids) {
      const request = own.get(id);
      request.heard.add(event.entity);
      if (ended) request.ended.set(event.entity, event);
      if (id === allRequest) followChain(request, ended ? null : event);
      if (request.ended.size >= request.entities.length) own.delete(id);
    }
  }

  /** Show the "All" request's chain: how many of its entities ended, and the one running now. */
  function followChain(request, now) {
    const n = request.entities.length;
    const done = request.ended.size;
    if (done >= n) return endChain(request);
    const part = now && now.total > 0 ? Math.min(now.done / now.total, 1) : 0;
    const step = `${Math.min(done + 1, n)} of ${n}`;
    const line = now
      ? [`${step}: ${entityLabel(now.entity)} ${count(now.done)} / ${count(now.total)}`, timeLeft(now.eta_s)]
      : [`${step}: waiting…`];
    cards.all.fraction(done + part, n, line.filter(Boolean).join(" · "));
  }

  function endChain(request) {
    const events = request.entities.map((entity) => request.ended.get(entity));
    allRequest = null;
    const failed = events.filter((e) => e.type === "failed");
    const sum = (key) => events.reduce((n, e) => n + (e[key] || 0), 0);
    const total = { pushed: sum("pushed"), pulled: sum("pulled") };
    const worst = failed.length ? "failed" : events.some((e) => outcome(e) === "conflicts") ? "conflicts" : "completed";
    const detail = failed.map((e) => `${entityLabel(e.entity)}: ${e.error || "failed"}`).join("; ");
    const direction = events[0]?.direction;
    cards.all.finished(worst, summary({ ...total, direction, type: worst === "failed" ? "failed" : "completed" }), detail);
  }

  function onStatus({ status }) {
    let pendingAll = 0;
    for (const entity of entities()) {
      const info = status.entities?.[entity] || {};
      pendingAll += info.pending || 0;
      cards[entity].setMeta(metaLine(info), info.last_run ? runTitle(info.last_run) : "");
      reconcile(entity, info.last_run, (status.syncing || []).includes(entity));
      if (cards[entity].state() === "idle" && info.last_run?.finished_at) cards[entity].idle(lastRunLine(info.last_run));
    }
    cards.all.setMeta(`${count(pendingAll)} pending`);
    showRejected(status.rejected || []);
  }

  /** Catch up on the end of this page's run whose end event it missed (e.g. while the stream was down). */
  function reconcile(entity, lastRun, syncing) {
    const state = cards[entity].state();
    const last = seen[entity];
    const waiting = state === "running" || state === "queued";
    if (syncing || !waiting || !last || Date.now() - last.at < STALE_MS) return;
    if (lastRun && lastRun.run_id === last.runId && lastRun.status !== "running") {
      onRunEvent({ ...lastRun, requests: last.requests, type: lastRun.status === "failed" ? "failed" : "completed" });
    }
  }

  function showRejected(list) {
    rejected.hidden = list.length === 0;
    if (!list.length) return;
    const shown = list.slice(0, 5).map((r) =>
      h("li", {}, h("strong", {}, `${entityLabel(r.entity)} ${r.record_id}`), `: ${r.reason || "rejected"}`),
    );
    if (list.length > 5) shown.push(h("li", {}, `and ${list.length - 5} more`));
    replace(
      rejected,
      h("h3", { class: "rejected-title" }, `Rejected by the server (${list.length})`),
      h("p", {}, "Edit these records to fix them; they are sent again on the next sync."),
      h("ul", {}, shown),
    );
  }

  subscribe(onRunEvent, RUN_EVENTS);
  subscribe(onStatus, ["status"]);
  subscribe(({ settings }) => {
    for (const card of Object.values(cards)) card.setDefaultDirection(settings.default_direction);
  }, ["settings"]);
  return { cards };
}

function outcome(event) {
  if (event.type === "failed" || event.status === "failed") return "failed";
  return event.status === "conflicts" ? "conflicts" : "completed";
}

const DIRECTION_WORDS = { both: "Both ways", push: "Push", pull: "Pull" };

/** "Both ways done · 3 pushed · 40 pulled", "Pull failed · 0 pulled": which direction ran, and how. */
function summary(event) {
  const counts = [
    event.direction !== "pull" && `${count(event.pushed)} pushed`,
    event.direction !== "push" && `${count(event.pulled)} pulled`,
  ].filter(Boolean).join(" · ");
  const ran = DIRECTION_WORDS[event.direction] || "Sync";
  if (event.type === "failed") return `${ran} failed · ${counts}`;
  return outcome(event) === "conflicts" ? `${ran} done with conflicts · ${counts}` : `${ran} done · ${counts}`;
}

function metaLine(info) {
  const parts = [`${count(info.synced)} synced`, `${count(info.pending)} pending`];
  if (info.conflict) parts.push(`${count(info.conflict)} in conflict`);
  if (info.rejected) parts.push(`${count(info.rejected)} rejected`);
  return parts.join(" · ");
}

function lastRunLine(run) {
  const ran = (DIRECTION_WORDS[run.direction] || "Sync").toLowerCase();
  return `Last run (${ran}) ${run.status} ${relativeTime(run.finished_at)}`;
}

function runTitle(run) {
  const ran = (DIRECTION_WORDS[run.direction] || "sync").toLowerCase();
  return `Last run: ${ran}, ${run.status}, ${dateTime(run.finished_at || run.started_at)}, ${run.pushed} pushed, ${run.pulled} pulled`;
}
