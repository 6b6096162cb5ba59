// The sync panel: a card per entity and one for "All", driven by the progress events.
//
// An entity card follows every run of its entity, whoever started it (this page, the
// scheduler, the CLI). The "All" card follows the chain this page asked for: customers,
// then quotes, then orders (spec §6.6), each a run of its own, so it accepts an entity's
// run only once the one before it in the chain has ended.

import { api } from "./api.js";
import { busy, h, replace } from "./dom.js";
import { subscribe } from "./events.js";
import { count, dateTime, entityLabel, ENTITIES, relativeTime, timeLeft } from "./format.js";
import { createSyncCard } from "./sync-card.js";

const STALE_MS = 10000; // a run with no event for this long is checked against /api/status
const RUN_EVENTS = ["started", "progress", "conflict", "completed", "failed"];

export function mountSyncPanel(root) {
  const cards = {};
  for (const entity of ENTITIES) {
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

  const seen = {}; // entity -> {runId, at}: the run last heard of
  let chain = null; // the "All" run this page asked for

  async function start(entities, direction, button) {
    const card = entities.length ? cards[entities[0]] : cards.all;
    try {
      const answer = await busy(button, () => api.sync(entities, direction));
      const order = answer.entities?.length ? answer.entities : ENTITIES;
      if (!entities.length) chain = { order, runIds: { [order[0]]: answer.run_id }, ended: new Map(), current: null };
      for (const entity of entities.length ? entities : ["all", ...order]) {
        if (cards[entity].state() !== "running") cards[entity].queued();
      }
      seen[order[0]] = { runId: answer.run_id, at: Date.now() };
    } catch (error) {
      card.showError(error.message);
    }
  }

  function onRunEvent(event) {
    const card = cards[event.entity];
    if (!card) return;
    seen[event.entity] = { runId: event.run_id, at: Date.now() };
    if (event.type === "completed" || event.type === "failed") {
      card.finished(outcome(event), summary(event), event.type === "failed" ? event.error || "Sync failed" : "");
    } else {
      card.running({ done: event.done, total: event.total, perSecond: event.rate, etaS: event.eta_s });
    }
    if (chain && belongsToChain(event)) followChain(event);
  }

  function belongsToChain(event) {
    const at = chain.order.indexOf(event.entity);
    if (at < 0 || chain.ended.has(event.entity)) return false;
    if (chain.runIds[event.entity]) return chain.runIds[event.entity] === event.run_id;
    if (at > 0 && !chain.ended.has(chain.order[at - 1])) return false;
    chain.runIds[event.entity] = event.run_id;
    return true;
  }

  function followChain(event) {
    const n = chain.order.length;
    if (event.type === "completed" || event.type === "failed") {
      chain.ended.set(event.entity, event);
      chain.current = null;
    } else {
      chain.current = event;
    }
    if (chain.ended.size >= n) return endChain();
    const now = chain.current;
    const part = now && now.total > 0 ? Math.min(now.done / now.total, 1) : 0;
    const step = `${Math.min(chain.ended.size + 1, n)} of ${n}`;
    const line = now
      ? [`${step}: ${entityLabel(now.entity)} ${count(now.done)} / ${count(now.total)}`, timeLeft(now.eta_s)]
      : [`${step}: waiting…`];
    cards.all.fraction(chain.ended.size + part, n, line.filter(Boolean).join(" · "));
  }

  function endChain() {
    const events = [...chain.ended.values()];
    chain = null;
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
    for (const entity of ENTITIES) {
      const info = status.entities?.[entity] || {};
      pendingAll += info.pending || 0;
      cards[entity].setMeta(metaLine(info), info.last_run ? runTitle(info.last_run) : "");
      reconcile(entity, info.last_run, (status.syncing || []).includes(entity));
      if (cards[entity].state() === "idle" && info.last_run?.finished_at) cards[entity].idle(lastRunLine(info.last_run));
    }
    cards.all.setMeta(`${count(pendingAll)} pending`);
    showRejected(status.rejected || []);
  }

  /** Catch up on a run whose end event this page missed (e.g. while the stream was down). */
  function reconcile(entity, lastRun, syncing) {
    const card = cards[entity];
    const state = card.state();
    if (syncing && state !== "running" && state !== "queued") return card.running({});
    const last = seen[entity];
    const waiting = state === "running" || state === "queued";
    if (syncing || !waiting || !last || Date.now() - last.at < STALE_MS) return;
    if (lastRun && lastRun.run_id === last.runId && lastRun.status !== "running") {
      onRunEvent({ ...lastRun, type: lastRun.status === "failed" ? "failed" : "completed" });
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
