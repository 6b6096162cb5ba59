// Building DOM without innerHTML: every text goes in through textContent, so record data
// can never become markup, and nothing needs an inline style or handler (the CSP forbids them).

/**
 * Create an element: `h("button", {class: "btn", onclick: fn, "data-id": 3}, "Save")`.
 * Keys starting with "on" add listeners; keys the element has as a property (id, value,
 * checked, disabled, hidden, type, ...) are set as properties; the rest as attributes.
 * Children are nodes or text; null, undefined and false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "text") {
      el.textContent = value;
    } else if (key in el && !key.includes("-")) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace all children of `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A one-line message area next to a control; `show(text, kind)` with kind ok|error|info. */
export function messageLine(id, { live = "polite" } = {}) {
  const el = h("p", { id, class: "message", "aria-live": live, hidden: true });
  el.show = (text, kind = "info") => {
    el.textContent = text || "";
    el.dataset.kind = kind;
    el.hidden = !text;
  };
  el.clear = () => el.show("");
  return el;
}

/** Mark a button busy while `work()` runs; returns what `work()` returns. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}
