// Small helpers: building DOM nodes (text is always set as text, never as
// HTML, since ids, reasons and outputs come from users) and formatting.

/** Creates an element: h("td", {class: "num"}, "3"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "style") el.style.cssText = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A state badge. */
export function badge(state, text = state) {
  return h("span", { class: "badge", "data-state": state }, String(text).replace("_", " "));
}

const integer = new Intl.NumberFormat("en-US");

/** 12345 -> "12,345". */
export function count(n) {
  return n === undefined || n === null ? "–" : integer.format(n);
}

/** A rate per second, compactly. */
export function rate(n) {
  if (!Number.isFinite(n)) return "–";
  if (n >= 100) return integer.format(Math.round(n));
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

/** Microseconds -> "850 µs", "12.3 ms", "4.2 s", "3 m 20 s". */
export function micros(us) {
  if (us === undefined || us === null || !Number.isFinite(us)) return "–";
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(us < 1e4 ? 1 : 0)} ms`;
  const s = us / 1e6;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} m`;
}

/** Milliseconds -> the same units as `micros`. */
export function millis(ms) {
  return ms === undefined || ms === null ? "–" : micros(ms * 1000);
}

/** How long ago a time in µs since the epoch was, from `nowMs`. */
export function ago(us, nowMs = Date.now()) {
  if (!us) return "–";
  const d = Math.max(0, nowMs * 1000 - us);
  return d < 1e6 ? "just now" : `${micros(d)} ago`;
}

/** A time in µs since the epoch as local HH:MM:SS.mmm. */
export function clock(us) {
  if (!us) return "–";
  const d = new Date(us / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Bytes -> "1.5 KiB". */
export function bytes(n) {
  if (n === undefined || n === null) return "–";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = -1;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** A number with up to 4 significant digits. */
export function num(v) {
  if (v === undefined || v === null || !Number.isFinite(v)) return "–";
  if (Number.isInteger(v)) return count(v);
  const abs = Math.abs(v);
  if (abs >= 1000) return count(Math.round(v));
  if (abs > 0 && abs < 0.001) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}
