// The words of the sync, as the UI server serves them (GET /api/vocabulary): the entities in
// the order "all" syncs them, each entity's fields, and the directions, policies and
// resolution choices. The page keeps no copy of these lists: it loads them once at start-up,
// before anything is rendered, and every component reads them from here. Labels for the
// served values stay with the components that show them.

import { api } from "./api.js";

let served = null;

/** Load the vocabulary; components may read it once this has resolved. */
export async function loadVocabulary() {
  served = await api.vocabulary();
  return served;
}

function vocabulary() {
  if (!served) throw new Error("the vocabulary is read before it was loaded");
  return served;
}

/** The entity names, in dependency order (customers before the quotes that refer to them). */
export function entities() {
  return vocabulary().entities.map((e) => e.name);
}

/** The entities a "Sync all" syncs, in the order it syncs them. */
export function allEntities() {
  return vocabulary().all;
}

function entity(name) {
  return served?.entities.find((e) => e.name === name) || null;
}

/** "customers" → "Customers". */
export function entityLabel(name) {
  return entity(name)?.label || name;
}

/** The fields a user edits, in the entity's own order. */
export function fieldsOf(name) {
  return entity(name)?.fields || [];
}

/** The fields a record cannot be saved without. */
export function requiredOf(name) {
  return entity(name)?.required || [];
}

export function directions() {
  return vocabulary().directions;
}

export function policies() {
  return vocabulary().policies;
}

export function resolutions() {
  return vocabulary().resolutions;
}

/** The shipped defaults, in force until the settings have loaded: {direction, policy}. */
export function defaults() {
  return vocabulary().defaults;
}
