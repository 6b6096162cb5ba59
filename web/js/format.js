// Turning API values into short human text: times, durations, rates, counts, labels.
// (The lists of entities and fields come from the UI API: see vocabulary.js.)

import { entityLabel } from "./vocabulary.js";

export { entityLabel };

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

/** "quote_number" → "Quote number". */
export function fieldLabel(name) {
  const text = name.replace(/_/g, " ").replace(/\bid\b/, "ID");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Labels of the record form and lists where the field's name in words is not the best one. */
const FORM_LABELS = { customer_id: "Customer", quote_id: "Quote", email: "E-mail", zip: "ZIP code" };

/** "customer_id" → "Customer", "project_name" → "Project name": a field as the record form shows it. */
export function formLabel(name) {
  return FORM_LABELS[name] || fieldLabel(name);
}

/** "customers" → "customer". */
export function singular(entity) {
  return entityLabel(entity).replace(/s$/, "").toLowerCase();
}

/** `text` as a sentence: a full stop added unless it already ends with one ("Maple Craft Co."). */
export function sentence(text) {
  const trimmed = String(text ?? "").trim();
  return /[.!?…]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

/** At most `max` characters of `text`, with "…" when cut (lists never hold a whole 10,000-character note). */
export function truncate(text, max) {
  const value = String(text ?? "");
  return value.length > max ? `${value.slice(0, max - 1).trimEnd()}…` : value;
}

/** How a picked customer reads in the form: "Anna Schmidt · Maple Craft Co.". */
export function customerLabel(customer) {
  return [customer?.name, customer?.company].filter(Boolean).join(" · ") || "Customer without a name";
}

/** How a picked quote reads in the form: "Q-000123 · Oak table". */
export function quoteLabel(quote) {
  return [quote?.quote_number, quote?.project_name].filter(Boolean).join(" · ") || "Quote without a number";
}

/** A short name for a record: the customer's name, the quote or order number. */
export function recordTitle(entity, record) {
  if (!record) return "";
  const main = { customers: record.name, quotes: record.quote_number, orders: record.order_number }[entity];
  const extra = entity === "customers" ? record.company : entity === "quotes" ? record.project_name : "";
  return [main, extra].filter(Boolean).join(" · ") || record.id || "";
}
