// A tab bar (WAI-ARIA tabs pattern): real buttons, arrow keys / Home / End move between
// tabs, and every tab stays reachable with Tab as well.

import { h } from "./dom.js";

/**
 * Build a tab bar plus one panel per item inside `container`.
 * items: [{key, label, id, panelId}]; onSelect(key) runs when a tab is shown.
 * Returns {panels: {key: element}, select(key)}.
 */
export function createTabs(container, items, { label, onSelect = () => {} } = {}) {
  const bar = h("div", { class: "tabbar", role: "tablist", "aria-label": label });
  const tabs = {};
  const panels = {};
  for (const item of items) {
    tabs[item.key] = h("button", {
      type: "button",
      class: "tab",
      role: "tab",
      id: item.id,
      "aria-controls": item.panelId,
      "aria-selected": "false",
      onclick: () => select(item.key),
      text: item.label,
    });
    tabs[item.key].dataset.tab = item.key;
    bar.append(tabs[item.key]);
    panels[item.key] = h("div", {
      class: "tabpanel",
      role: "tabpanel",
      id: item.panelId,
      "aria-labelledby": item.id,
      hidden: true,
    });
  }
  bar.addEventListener("keydown", (event) => {
    const keys = items.map((item) => item.key);
    const at = keys.indexOf(event.target.dataset.tab);
    if (at < 0) return;
    const next = {
      ArrowRight: (at + 1) % keys.length,
      ArrowLeft: (at - 1 + keys.length) % keys.length,
      Home: 0,
      End: keys.length - 1,
    }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    select(keys[next]);
    tabs[keys[next]].focus();
  });
  container.append(bar, ...Object.values(panels));

  let current = null;
  function select(key) {
    if (!(key in tabs)) return;
    for (const [other, tab] of Object.entries(tabs)) {
      const on = other === key;
      tab.setAttribute("aria-selected", String(on));
      panels[other].hidden = !on;
    }
    if (current !== key) {
      current = key;
      onSelect(key);
    }
  }
  return { panels, select, current: () => current };
}
