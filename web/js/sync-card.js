// One card of the sync panel: a direction select, a sync button, a progress bar with its
// counts / rate / time left, and a message line for the outcome or the error.

import { h, messageLine } from "./dom.js";
import { count, rate, timeLeft } from "./format.js";
import { defaults, directions } from "./vocabulary.js";

/** How the served directions read on a card (the list comes from the UI API). */
const DIRECTION_LABELS = { both: "Both ways", push: "Push (upload)", pull: "Pull (download)" };

/** Build the card for `key` (an entity or "all"); `onSync(direction)` runs on click. */
export function createSyncCard(key, { title, buttonLabel, onSync }) {
  const select = h(
    "select",
    { id: `direction-${key}`, name: `direction-${key}` },
    directions().map((value) => h("option", { value }, DIRECTION_LABELS[value] || value)),
  );
  select.value = defaults().direction; // until the settings say which direction the user chose
  select.addEventListener("change", () => (select.dataset.touched = "true"));
  const button = h("button", { type: "button", id: `sync-${key}`, class: "btn btn-primary" }, buttonLabel);
  button.addEventListener("click", () => onSync(select.value, button));
  const bar = h("progress", { id: `progress-${key}`, class: "progress", max: 1, value: 0 });
  bar.setAttribute("aria-label", `${title} progress`);
  const text = h("p", { id: `progress-text-${key}`, class: "progress-text" }, "Idle");
  const meta = h("p", { id: `sync-meta-${key}`, class: "card-meta" });
  const message = messageLine(`sync-message-${key}`);
  const el = h(
    "article",
    { class: "card sync-card", id: `sync-card-${key}`, "data-state": "idle" },
    h("h3", { class: "card-title" }, title),
    meta,
    h(
      "div",
      { class: "sync-controls" },
      h("label", { for: select.id, class: "visually-hidden" }, `${title} direction`),
      select,
      button,
    ),
    bar,
    text,
    message,
  );

  return {
    el,
    select,
    button,
    state: () => el.dataset.state,
    setMeta(line, title = "") {
      meta.textContent = line;
      meta.title = title;
    },
    /** Use the settings' default direction unless the user picked one here. */
    setDefaultDirection(direction) {
      if (!select.dataset.touched && direction) select.value = direction;
    },
    queued() {
      el.dataset.state = "queued";
      bar.removeAttribute("value"); // indeterminate until the first event
      text.textContent = "Queued…";
      message.clear();
    },
    /** Show a running sync: `done` of `total`, with rate and seconds left when known. */
    running({ done = 0, total = 0, perSecond = 0, etaS = 0, prefix = "" }) {
      el.dataset.state = "running";
      if (total > 0) {
        bar.max = total;
        bar.value = Math.min(done, total);
      } else {
        bar.removeAttribute("value");
      }
      const parts = [total > 0 ? `${count(done)} / ${count(total)}` : "Starting…", rate(perSecond), timeLeft(etaS)];
      text.textContent = prefix + parts.filter(Boolean).join(" · ");
      message.clear();
    },
    /** Show the end of a run: outcome is completed | conflicts | failed. */
    finished(outcome, summary, detail = "") {
      el.dataset.state = outcome;
      if (!bar.hasAttribute("value")) {
        bar.max = 1;
        bar.value = 0;
      }
      if (outcome !== "failed") bar.value = bar.max;
      text.textContent = summary;
      message.show(detail, outcome === "failed" ? "error" : outcome === "conflicts" ? "warning" : "ok");
    },
    fraction(value, max, line) {
      el.dataset.state = "running";
      bar.max = max;
      bar.value = value;
      text.textContent = line;
      message.clear();
    },
    showError(text) {
      message.show(text, "error");
    },
    idle(line = "Idle") {
      el.dataset.state = "idle";
      bar.max = 1;
      bar.value = 0;
      text.textContent = line;
    },
  };
}
