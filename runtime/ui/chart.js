// Line charts on a canvas, drawn here (no library): the live rate chart
// and the learner's sparklines. Colours come from the CSS variables.

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** Sizes the canvas to its CSS box at the device's pixel ratio. */
function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}

/** A "nice" upper bound for an axis: 1, 2, 2.5 or 5 times a power of ten. */
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/**
 * Draws series over time.
 * @param {HTMLCanvasElement} canvas
 * @param {{name: string, color: string, points: {t: number, v: number}[]}[]} series
 * @param {{windowMs: number, nowMs: number, unit: string}} options
 */
export function timeChart(canvas, series, { windowMs, nowMs, unit }) {
  const { ctx, width, height } = prepare(canvas);
  const pad = { left: 44, right: 10, top: 10, bottom: 22 };
  const w = width - pad.left - pad.right;
  const hgt = height - pad.top - pad.bottom;
  const t0 = nowMs - windowMs;
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.v))) * 1.1);
  const x = (t) => pad.left + ((t - t0) / windowMs) * w;
  const y = (v) => pad.top + hgt - (v / max) * hgt;

  ctx.font = `11px ${css("--mono") || "monospace"}`;
  ctx.fillStyle = css("--muted");
  ctx.strokeStyle = css("--line");
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i += 1) {
    const v = (max / 4) * i;
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(pad.left, yy);
    ctx.lineTo(width - pad.right, yy);
    ctx.stroke();
    ctx.fillText(Number(v.toPrecision(3)).toString(), pad.left - 6, yy);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const step = windowMs / 4;
  for (let i = 0; i <= 4; i += 1) {
    const t = t0 + step * i;
    const secs = Math.round((nowMs - t) / 1000);
    ctx.fillText(secs === 0 ? "now" : `-${secs}s`, x(t), height - pad.bottom + 6);
  }
  ctx.save();
  ctx.translate(10, pad.top + hgt / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "top";
  ctx.fillText(unit, 0, -6);
  ctx.restore();

  ctx.save();
  ctx.beginPath();
  ctx.rect(pad.left, pad.top - 2, w, hgt + 4);
  ctx.clip();
  for (const s of series) {
    const pts = s.points.filter((p) => p.t >= t0 - 2000);
    if (pts.length < 2) continue;
    const color = s.color.startsWith("--") ? css(s.color) : s.color;
    const gradient = ctx.createLinearGradient(0, pad.top, 0, pad.top + hgt);
    gradient.addColorStop(0, `${color}55`);
    gradient.addColorStop(1, `${color}00`);
    ctx.beginPath();
    ctx.moveTo(x(pts[0].t), y(0));
    for (const p of pts) ctx.lineTo(x(p.t), y(p.v));
    ctx.lineTo(x(pts[pts.length - 1].t), y(0));
    ctx.closePath();
    ctx.fillStyle = gradient;
    ctx.fill();
    ctx.beginPath();
    pts.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p.t), y(p.v)) : ctx.lineTo(x(p.t), y(p.v))));
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.8;
    ctx.lineJoin = "round";
    ctx.stroke();
  }
  ctx.restore();
}

/** A small line over equally spaced values, with its last value marked. */
export function sparkline(canvas, values, color = "--accent") {
  const { ctx, width, height } = prepare(canvas);
  const vals = values.filter(Number.isFinite);
  if (vals.length === 0) return;
  const lo = Math.min(...vals);
  const hi = Math.max(...vals);
  const span = hi - lo || Math.abs(hi) || 1;
  const pad = 6;
  const x = (i) => pad + (vals.length === 1 ? (width - 2 * pad) / 2 : (i / (vals.length - 1)) * (width - 2 * pad));
  const y = (v) => pad + (1 - (v - lo) / span) * (height - 2 * pad);
  const c = color.startsWith("--") ? css(color) : color;
  ctx.strokeStyle = css("--line");
  ctx.beginPath();
  ctx.moveTo(pad, height - pad + 0.5);
  ctx.lineTo(width - pad, height - pad + 0.5);
  ctx.stroke();
  ctx.beginPath();
  vals.forEach((v, i) => (i === 0 ? ctx.moveTo(x(i), y(v)) : ctx.lineTo(x(i), y(v))));
  ctx.strokeStyle = c;
  ctx.lineWidth = 1.6;
  ctx.stroke();
  const last = vals.length - 1;
  ctx.fillStyle = c;
  ctx.beginPath();
  ctx.arc(x(last), y(vals[last]), 3, 0, 2 * Math.PI);
  ctx.fill();
}
