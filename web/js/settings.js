// The settings panel: remote server and key, automatic sync, default direction and
// conflict policy, with "Save" and "Test connection". The key is never shown: the
// placeholder holds the masked form the API gives, and typing a new key replaces it.

import { api } from "./api.js";
import { busy, h, messageLine, replace } from "./dom.js";
import { confirmAction } from "./confirm.js";
import { publish } from "./events.js";
import { INTERVALS, intervalLabel } from "./format.js";
import { defaults, directions, policies } from "./vocabulary.js";

const CLOCK_SKEW_WARN_S = 120; // spec §6.9

/** How the served directions and policies read in the form (the lists come from the UI API). */
const DIRECTION_LABELS = { both: "Both ways (recommended)", push: "Push (send changes)", pull: "Pull (fetch changes)" };
const POLICY_LABELS = { remote: "Server wins", local: "This computer wins", manual: "Ask me" };

function field(label, control, ...extra) {
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, ...extra);
}

function check(label, control) {
  return h("div", { class: "field field-check" }, control, h("label", { for: control.id }, label));
}

function options(values, labels) {
  return values.map((value) => h("option", { value }, labels[value] || value));
}

export function mountSettings(root) {
  const url = h("input", { id: "settings-remote-url", name: "remote_url", type: "url", autocomplete: "off" });
  url.setAttribute("placeholder", "https://example.com/api");
  const urlNote = h("p", { id: "remote-url-note", class: "hint" });
  const urlError = h("p", { id: "settings-remote-url-error", class: "field-error", hidden: true });
  const keyError = h("p", { id: "settings-api-key-error", class: "field-error", hidden: true });
  const key = h("input", { id: "settings-api-key", name: "api_key", type: "password", autocomplete: "new-password" });
  const keyHint = h("p", { id: "api-key-hint", class: "hint" });
  const removeKey = h("button", { type: "button", id: "api-key-remove", class: "btn btn-small", hidden: true }, "Remove key");
  const autoSync = h("input", { id: "settings-auto-sync", name: "auto_sync", type: "checkbox" });
  const interval = h("select", { id: "settings-interval", name: "interval_minutes" },
    INTERVALS.map((m) => h("option", { value: String(m) }, intervalLabel(m))));
  const onLaunch = h("input", { id: "settings-sync-on-launch", name: "sync_on_launch", type: "checkbox" });
  const direction = h("select", { id: "settings-direction", name: "default_direction" }, options(directions(), DIRECTION_LABELS));
  const policy = h("select", { id: "settings-policy", name: "conflict_policy" }, options(policies(), POLICY_LABELS));
  const save = h("button", { type: "submit", id: "settings-save", class: "btn btn-primary" }, "Save");
  const test = h("button", { type: "button", id: "settings-test", class: "btn" }, "Test connection");
  const result = messageLine("settings-result");

  const form = h(
    "form",
    { id: "settings-form", class: "settings-form", novalidate: true },
    h("fieldset", { class: "card" }, h("legend", {}, "Server"),
      field("Remote API URL", url, urlError, urlNote),
      field("API key", key, keyError, h("div", { class: "inline" }, keyHint, removeKey))),
    h("fieldset", { class: "card" }, h("legend", {}, "Automatic sync"),
      check("Sync automatically", autoSync),
      field("Every", interval),
      check("Sync when the app starts", onLaunch)),
    h("fieldset", { class: "card" }, h("legend", {}, "Behaviour"),
      field("Default direction", direction),
      field("Conflict policy", policy,
        h("p", { class: "hint" }, "Used when a field was changed both here and on the server."))),
    h("div", { class: "form-actions" }, save, test, result),
  );
  replace(root, h("h2", { class: "visually-hidden" }, "Settings"), form);

  let saved = null;
  const fieldErrors = { remote_url: [url, urlError], api_key: [key, keyError] };

  function showFieldErrors(fields = {}) {
    for (const [name, [control, line]] of Object.entries(fieldErrors)) {
      const text = fields[name] || "";
      line.textContent = text;
      line.hidden = !text;
      control.closest(".field")?.classList.toggle("field-invalid", Boolean(text));
      if (text) {
        control.setAttribute("aria-invalid", "true");
        control.setAttribute("aria-describedby", line.id);
      } else {
        control.removeAttribute("aria-invalid");
        control.removeAttribute("aria-describedby");
      }
    }
    const first = Object.keys(fieldErrors).find((name) => fields[name]);
    if (first) fieldErrors[first][0].focus();
  }
  url.addEventListener("input", () => showFieldErrors({}));
  key.addEventListener("input", () => showFieldErrors({}));

  function fill(settings) {
    saved = settings;
    url.value = settings.remote_url || "";
    url.readOnly = Boolean(settings.remote_url_locked);
    urlNote.textContent = URL_NOTES[settings.remote_source] || "The address of your business's CraftSync server.";
    key.value = "";
    key.placeholder = settings.api_key_set ? settings.api_key_masked : "No key for this address";
    keyHint.textContent = KEY_HINTS[settings.api_key_source] || "No key for this address yet: type the key you were given.";
    removeKey.hidden = !(settings.api_key_saved && settings.api_key_source === "saved");
    autoSync.checked = Boolean(settings.auto_sync);
    const minutes = String(settings.interval_minutes ?? 30);
    if (![...interval.options].some((o) => o.value === minutes)) {
      interval.append(h("option", { value: minutes }, intervalLabel(Number(minutes))));
    }
    interval.value = minutes;
    onLaunch.checked = Boolean(settings.sync_on_launch);
    direction.value = settings.default_direction || defaults().direction;
    policy.value = settings.conflict_policy || defaults().policy;
    publish({ type: "settings", settings });
  }

  function changes() {
    const body = {
      auto_sync: autoSync.checked,
      interval_minutes: Number(interval.value),
      sync_on_launch: onLaunch.checked,
      default_direction: direction.value,
      conflict_policy: policy.value,
    };
    const newUrl = url.value.trim();
    if (!saved?.remote_url_locked && newUrl !== (saved?.remote_url || "")) body.remote_url = newUrl;
    if (key.value) body.api_key = key.value;
    return body;
  }

  async function load() {
    try {
      fill(await api.settings());
      return true;
    } catch (error) {
      result.show(`Could not load the settings: ${error.message}`, "error");
      return false;
    }
  }

  async function saveChanges(body) {
    try {
      fill(await busy(save, () => api.saveSettings(body)));
    } catch (error) {
      if (error.code === "key_needed") return askAboutTheKey(body, error);
      showFieldErrors(error.fields);
      result.show(Object.keys(error.fields || {}).length ? "Check the highlighted setting." : error.message, "error");
      return;
    }
    if (saved.remote_url && !saved.api_key_set) {
      result.show(`Saved. Enter the API key for ${saved.remote_url} to start syncing.`, "warning");
    } else {
      result.show("Saved.", "ok");
    }
  }

  /** A new address with a key saved for the old one: the old key goes there only if the user says so. */
  async function askAboutTheKey(body, error) {
    const reuse = await confirmAction(
      `Use the saved API key with ${body.remote_url}? That server then receives the key saved for ${saved.remote_url}.`,
      { confirmLabel: "Use the saved key", cancelLabel: "Type a new key" },
    );
    if (reuse) return saveChanges({ ...body, keep_key: true });
    showFieldErrors(error.fields);
    result.show("Type the API key for the new address, then save.", "warning");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.clear();
    showFieldErrors({});
    await saveChanges(changes());
  });

  test.addEventListener("click", async () => {
    const overrides = {};
    if (!saved?.remote_url_locked && url.value.trim() && url.value.trim() !== saved?.remote_url) {
      overrides.remote_url = url.value.trim();
    }
    if (key.value) overrides.api_key = key.value;
    result.show("Testing…", "info");
    try {
      const answer = await busy(test, () => api.testConnection(overrides));
      result.show(...describeTest(answer));
    } catch (error) {
      result.show(error.message, "error");
    }
  });

  removeKey.addEventListener("click", async () => {
    const sure = await confirmAction(
      `Remove the saved API key? Sync with ${saved?.remote_url || "the server"} stops until a key is entered again.`,
      { confirmLabel: "Remove key" },
    );
    if (!sure) return;
    try {
      fill(await busy(removeKey, () => api.saveSettings({ api_key: "" })));
      result.show("Key removed.", "ok");
    } catch (error) {
      result.show(error.message, "error");
    }
  });

  load();
  return { load, loaded: () => saved !== null };
}

const URL_NOTES = {
  demo: "The built-in demo server, started with CraftSync and filled with sample records. " +
    "Enter your business's server address to sync with it instead.",
  environment: "Set by REMOTE_API_URL in the environment; change it there.",
  saved: "The address of your business's CraftSync server. Clear it to use the built-in demo server.",
};
const KEY_HINTS = {
  demo: "The demo server's key is filled in automatically.",
  environment: "Set by REMOTE_API_KEY in the environment.",
  saved: "A key is saved for this address. Type a new one to replace it.",
};

function describeTest(answer) {
  if (!answer.ok) return [answer.message || "Connection failed.", "error"];
  const parts = [answer.message || "Connected"];
  if (answer.latency_ms != null) parts.push(`${Math.round(answer.latency_ms)} ms`);
  const skew = Number(answer.clock_skew_s || 0);
  if (Math.abs(skew) > CLOCK_SKEW_WARN_S) {
    const minutes = Math.round(Math.abs(skew) / 60);
    parts.push(`warning: the server's clock differs from this computer's by about ${minutes} min`);
    return [parts.join(" · "), "warning"];
  }
  return [parts.join(" · "), "ok"];
}
