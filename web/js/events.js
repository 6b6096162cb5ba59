// Progress events (spec §7) from GET /api/events, and the page's own notifications.
//
// Subscribers get every event object: the server's `started`, `progress`, `completed`,
// `failed` and `conflict` events, plus the page's own ones (`status`, `settings`,
// `conflicts-changed`, `records-changed`, `stream`), so that components never call each
// other directly. EventSource retries a dropped connection by itself, but gives up when
// the server answers with an error; then we open a new one, waiting longer each time.

const subscribers = new Set();
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;

let source = null;
let retryMs = RETRY_MIN_MS;
let retryTimer = 0;

/** Call `fn(event)` for every event; `types` (optional) limits it to those types. */
export function subscribe(fn, types) {
  const wanted = types ? new Set(types) : null;
  const handler = (event) => {
    if (!wanted || wanted.has(event.type)) fn(event);
  };
  subscribers.add(handler);
  return () => subscribers.delete(handler);
}

/** Hand `event` to every subscriber (used for the page's own notifications too). */
export function publish(event) {
  for (const fn of subscribers) {
    try {
      fn(event);
    } catch (error) {
      console.error("event subscriber failed", error);
    }
  }
}

/** Open the event stream; it stays open (reconnecting) for the life of the page. */
export function connect(url = "/api/events") {
  clearTimeout(retryTimer);
  source = new EventSource(url);
  source.addEventListener("open", () => {
    retryMs = RETRY_MIN_MS;
    publish({ type: "stream", state: "open" });
  });
  source.addEventListener("message", (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return; // not an event of ours
    }
    if (event && typeof event.type === "string") publish(event);
  });
  source.addEventListener("error", () => {
    publish({ type: "stream", state: "closed" });
    if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    source.close();
    retryTimer = setTimeout(() => connect(url), retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  });
}
