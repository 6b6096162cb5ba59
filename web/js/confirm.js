// A small modal "are you sure?" dialog (instead of window.confirm, which blocks the page
// and cannot be styled). Esc or "Cancel" answers no.

import { h } from "./dom.js";

let dialog = null;

function build() {
  const message = h("p", { id: "confirm-message", class: "confirm-message" });
  const yes = h("button", { type: "submit", id: "confirm-yes", class: "btn btn-danger", value: "yes" }, "Delete");
  const no = h("button", { type: "submit", id: "confirm-no", class: "btn", value: "no", autofocus: true }, "Cancel");
  dialog = h(
    "dialog",
    { id: "confirm-dialog", class: "dialog dialog-small", "aria-labelledby": "confirm-title" },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "confirm-title", class: "dialog-title" }, "Please confirm"),
      message,
      h("div", { class: "dialog-actions" }, no, yes),
    ),
  );
  dialog.parts = { message, yes, no };
  document.body.append(dialog);
}

/** Ask `question`; resolves true when the user confirms. */
export function confirmAction(question, { confirmLabel = "Delete", cancelLabel = "Cancel", title = "Please confirm" } = {}) {
  if (!dialog) build();
  dialog.parts.message.textContent = question;
  dialog.parts.yes.textContent = confirmLabel;
  dialog.parts.no.textContent = cancelLabel;
  dialog.querySelector(".dialog-title").textContent = title;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}
