// Small DOM helpers shared by the pages. Text is always inserted with textContent (or as
// text nodes): nothing here parses HTML, so data from the network can never become markup.

/**
 * Creates an element.
 * `attrs`: `class`, `text` (textContent), `dataset` (object), `on` (object of event
 * listeners), `style` (object of CSS properties, custom properties allowed), any other key
 * as an attribute (`true` sets it empty, `false`/`null`/`undefined` leaves it out).
 * Children: nodes or strings (strings become text nodes); null/false are skipped.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'on') {
      for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    } else if (key === 'style') {
      for (const [prop, v] of Object.entries(value)) node.style.setProperty(prop, v);
    } else if (key === 'value') node.value = value;
    else if (key === 'checked') node.checked = Boolean(value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, ...children);
  return node;
}

/** Appends nodes or strings (as text) to `parent`. */
export function append(parent, ...children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Removes every child of `node`. */
export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** Replaces the children of `node`. */
export function replace(node, ...children) {
  clear(node);
  return append(node, ...children);
}

/** Shows or hides an element with the `hidden` attribute. */
export function show(node, visible) {
  node.hidden = !visible;
  return node;
}

/** Number from a proto3 JSON 64-bit integer (a string) or a number; 0 when absent. */
export function num(value) {
  if (value === undefined || value === null || value === '') return 0;
  const n = Number(value);
  return Number.isFinite(n) ? n : 0;
}

/** "m:ss" (or "h:mm:ss") from seconds. */
export function clock(seconds) {
  const s = Math.max(0, Math.round(num(seconds)));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Reads JSON from a Storage, or `fallback` when absent, unreadable or storage is blocked. */
export function loadJson(storage, key, fallback = null) {
  try {
    const raw = storage && storage.getItem(key);
    return raw ? JSON.parse(raw) : fallback;
  } catch {
    return fallback;
  }
}

/** Writes JSON to a Storage; a full or blocked storage is ignored (the page still works). */
export function saveJson(storage, key, value) {
  try {
    if (!storage) return;
    if (value === null || value === undefined) storage.removeItem(key);
    else storage.setItem(key, JSON.stringify(value));
  } catch {
    // Quota exceeded or storage disabled: the page goes on without persistence.
  }
}

/** The session storage, or null when the browser blocks it. */
export function sessionStore() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

/** The local storage, or null when the browser blocks it. */
export function localStore() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}
