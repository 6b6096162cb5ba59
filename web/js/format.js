// Turning API values into short human text: times, durations, rates and counts.

const ENTITY_LABELS = { customers: "Customers", quotes: "Quotes", orders: "Orders" };

export const ENTITIES = ["customers", "quotes", "orders"];

export function entityLabel(entity) {
  return ENTITY_LABELS[entity] || entity;
}

/** Parse an ISO-8601 time; one without a zone is UTC (the API's times all are). */
export function parseTime(iso) {
  if (!iso) return null;
  const text = /[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** "just now", "2 min ago", "3 h ago", "yesterday", or a date. */
export function relativeTime(iso, now = Date.now()) {
  const date = parseTime(iso);
  if (!date) return "never";
  const seconds = Math.round((now - date.getTime()) / 1000);
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  if (hours < 48) return "yesterday";
  return date.toLocaleDateString(undefined, { dateStyle: "medium" });
}

/** A local date and time, e.g. "25 Nov 2025, 10:18". */
export function dateTime(iso) {
  const date = parseTime(iso);
  return date ? date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "";
}

/** "~12 s left", "~3 min left", "~1 h 5 min left". */
export function timeLeft(seconds) {
  if (!Number.isFinite(seconds) || seconds <= 0) return "";
  if (seconds < 60) return `~${Math.max(1, Math.round(seconds))} s left`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `~${minutes} min left`;
  return `~${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

/** "35 records/s", "2.5 records/s". */
export function rate(perSecond) {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return "";
  const value = perSecond < 10 ? Math.round(perSecond * 10) / 10 : Math.round(perSecond);
  return `${count(value)} records/s`;
}

export function count(n) {
  return Number(n || 0).toLocaleString();
}

/** "1 conflict", "2 conflicts". */
export function plural(n, word, many = `${word}s`) {
  return `${count(n)} ${n === 1 ? word : many}`;
}

/** Interval choices for auto-sync, in minutes (spec §8: 5 min to 24 h). */
export const INTERVALS = [5, 10, 15, 30, 60, 120, 240, 360, 720, 1440];

export function intervalLabel(minutes) {
  if (minutes < 60) return `${minutes} min`;
  const hours = minutes / 60;
  return Number.isInteger(hours) ? `${hours} h` : `${Math.floor(hours)} h ${minutes % 60} min`;
}

/** Editable fields per entity (docs/UI-API.md), used when the API has not said yet. */
export const FIELDS = {
  customers: ["name", "company", "email", "phone", "address", "city", "state", "zip", "country", "notes"],
  quotes: ["quote_number", "customer_id", "project_name", "status", "total_amount", "discount_percent",
    "tax_percent", "notes", "valid_until", "created_by"],
  orders: ["order_number", "quote_id", "customer_id", "status", "order_date", "delivery_date", "total_amount",
    "payment_status", "notes"],
};

/** "quote_number" → "Quote number". */
export function fieldLabel(name) {
  const text = name.replace(/_/g, " ").replace(/\bid\b/, "ID");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** A short name for a record: the customer's name, the quote or order number. */
export function recordTitle(entity, record) {
  if (!record) return "";
  const main = { customers: record.name, quotes: record.quote_number, orders: record.order_number }[entity];
  const extra = entity === "customers" ? record.company : entity === "quotes" ? record.project_name : "";
  return [main, extra].filter(Boolean).join(" · ") || record.id || "";
}
