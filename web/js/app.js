// Wires the components together: the header's status indicator, the sync panel, the
// Records / History / Settings tabs, the conflict dialog, the event stream and the banner
// shown while the UI server itself cannot be reached. The vocabulary (entities, fields,
// directions, policies) is loaded from the UI API first: every component builds on it.

import { onReachability } from "./api.js";
import { mountConflicts } from "./conflicts.js";
import { connect } from "./events.js";
import { mountHistory } from "./history.js";
import { mountRecords } from "./records.js";
import { mountSettings } from "./settings.js";
import { mountStatus } from "./status.js";
import { mountSyncPanel } from "./sync-panel.js";
import { createTabs } from "./tabs.js";
import { loadVocabulary } from "./vocabulary.js";

const SECTIONS = [
  { key: "records", label: "Records", mount: mountRecords },
  { key: "history", label: "History", mount: mountHistory },
  { key: "settings", label: "Settings", mount: mountSettings },
];

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;

/** Load the vocabulary, trying again (waiting longer each time) until the UI server answers. */
async function vocabularyLoaded() {
  for (let waitMs = RETRY_MIN_MS; ; waitMs = Math.min(waitMs * 2, RETRY_MAX_MS)) {
    try {
      return await loadVocabulary();
    } catch {
      await new Promise((resolve) => setTimeout(resolve, waitMs)); // the banner says why meanwhile
    }
  }
}

async function start() {
  const banner = document.getElementById("server-banner");
  onReachability((reachable) => {
    banner.hidden = reachable;
  });
  await vocabularyLoaded();

  const conflicts = mountConflicts();
  mountStatus(document.getElementById("status"), { openConflicts: () => conflicts.open() });
  mountSyncPanel(document.getElementById("sync-panel"));

  const views = {};
  const tabs = createTabs(
    document.getElementById("workspace"),
    SECTIONS.map(({ key, label }) => ({ key, label, id: `tab-${key}`, panelId: `panel-${key}` })),
    {
      label: "Sections",
      onSelect(key) {
        for (const [other, view] of Object.entries(views)) view.show?.(other === key);
        if (key === "settings" && !views.settings.loaded()) views.settings.load();
        history.replaceState(null, "", `#${key}`);
      },
    },
  );
  for (const { key, mount } of SECTIONS) views[key] = mount(tabs.panels[key]);

  const wanted = location.hash.slice(1);
  tabs.select(SECTIONS.some((s) => s.key === wanted) ? wanted : SECTIONS[0].key);
  connect();
}

start();
