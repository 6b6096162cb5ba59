// The UI server's local JSON API (docs/UI-API.md): one fetch wrapper for every call.
//
// Errors come back as thrown ApiError objects carrying the server's one-line message, so a
// component can show it next to the control that failed. A network failure (the UI server
// itself not answering) is reported to the reachability listeners, which drive the banner.

const listeners = new Set();
let reachable = true;

/** An answer other than 2xx, or no answer at all (status 0). */
export class ApiError extends Error {
  constructor(message, { status = 0, code = "", fields = {} } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.fields = fields; // field name -> the sentence to show next to that field
  }
}

/** Call `fn(isReachable)` whenever the UI server starts or stops answering. */
export function onReachability(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function setReachable(value) {
  if (value === reachable) return;
  reachable = value;
  for (const fn of listeners) fn(value);
}

async function request(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    setReachable(false);
    throw new ApiError("Cannot reach CraftSync: the local service is not answering.");
  }
  setReachable(true);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = data?.message || `${response.status} ${response.statusText || "error"}`;
    throw new ApiError(message, { status: response.status, code: data?.error || "", fields: data?.fields || {} });
  }
  return data;
}

function query(params) {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return entries.length ? `?${new URLSearchParams(entries)}` : "";
}

export const api = {
  status: () => request("GET", "/api/status"),
  vocabulary: () => request("GET", "/api/vocabulary"),
  /** `requestId`: the id the page follows this request's runs by (32 lowercase hex digits). */
  sync: (entities, direction, requestId) =>
    request("POST", "/api/sync", { entities, direction, request_id: requestId }),
  settings: () => request("GET", "/api/settings"),
  saveSettings: (changes) => request("PUT", "/api/settings", changes),
  testConnection: (overrides = {}) => request("POST", "/api/settings/test", overrides),
  conflicts: () => request("GET", "/api/conflicts"),
  resolve: (id, use, data) =>
    request("POST", `/api/conflicts/${encodeURIComponent(id)}/resolve`, data ? { use, data } : { use }),
  history: (limit = 50) => request("GET", `/api/history${query({ limit })}`),
  /** params: q, limit, offset, customer_id, quote_id (docs/UI-API.md). */
  records: (entity, { limit = 100, offset = 0, ...params } = {}) =>
    request("GET", `/api/records/${entity}${query({ ...params, limit, offset })}`),
  /** The picker's matches for `q` (docs/UI-API.md). */
  choices: (entity, q, limit = 10) => request("GET", `/api/records/${entity}/choices${query({ q, limit })}`),
  createRecord: (entity, data) => request("POST", `/api/records/${entity}`, data),
  updateRecord: (entity, id, data) =>
    request("PUT", `/api/records/${entity}/${encodeURIComponent(id)}`, data),
  deleteRecord: (entity, id) => request("DELETE", `/api/records/${entity}/${encodeURIComponent(id)}`),
};
