// The dashboard's main loop: polls the HTTP API about once a second and
// redraws every panel. Each panel fails on its own (an endpoint that errors
// shows its error there) so one missing feature does not blank the page.

import { get, countInState, token, setToken } from "./api.js";
import { h, fill, clock } from "./dom.js";
import { timeChart } from "./chart.js";
import { STATES, renderCounts, renderExecutors, renderAlerts, renderQueries, renderModels } from "./panels.js";
import { TaskTable, TaskDetail } from "./tasks.js";

const POLL_MS = 1000;
const WINDOW_MS = 120_000;
const FINALS = ["succeeded", "failed", "timed_out", "cancelled", "rejected"];
const SERIES = [
  { name: "succeeded", color: "--succeeded", of: (s) => s.succeeded },
  { name: "failed + timed out", color: "--failed", of: (s) => s.failed + s.timed_out },
  { name: "cancelled", color: "--cancelled", of: (s) => s.cancelled },
  { name: "rejected", color: "--rejected", of: (s) => s.rejected },
];

const $ = (id) => document.getElementById(id);
/** Stats snapshots over the chart's window: {t, stats}. */
const history = [];
let counts = {};
let wake = null;

const table = new TaskTable({ onOpen: (id) => openTask(id) });
const detail = new TaskDetail({ onClose: () => selectRow(null) });
table.onChange = () => refreshTable().catch(() => {});

function selectRow(id) {
  table.selected = id;
  for (const tr of document.querySelectorAll("#task-rows tr")) tr.classList.toggle("selected", tr.dataset.id === id);
}

function openTask(id) {
  selectRow(id);
  detail.open(id);
}

function panelError(el, e) {
  fill(el, h("p", { class: "empty" }, `Unavailable: ${e.message}`));
}

/** Finals per second by state, over the last few seconds of history. */
function recentRates() {
  const rates = {};
  if (history.length < 2) return rates;
  const last = history[history.length - 1];
  const first = history.find((p) => p.t >= last.t - 5000) || history[0];
  const dt = (last.t - first.t) / 1000;
  if (dt <= 0) return rates;
  for (const s of FINALS) rates[s] = Math.max(0, (last.stats[s] - first.stats[s]) / dt);
  return rates;
}

function drawChart() {
  const now = Date.now();
  const series = SERIES.map((s) => ({
    name: s.name,
    color: s.color,
    points: history.slice(1).map((p, i) => {
      const prev = history[i];
      const dt = (p.t - prev.t) / 1000;
      return { t: p.t, v: dt > 0 ? Math.max(0, (s.of(p.stats) - s.of(prev.stats)) / dt) : 0 };
    }),
  }));
  // Until the page has two minutes of history, the chart spans what it has.
  const span = history.length ? now - history[0].t : 0;
  const windowMs = Math.min(WINDOW_MS, Math.max(10_000, span));
  timeChart($("rate-chart"), series, { windowMs, nowMs: now, unit: "tasks/s" });
}

function drawLegend() {
  fill(
    $("rate-legend"),
    SERIES.map((s) => h("span", {}, h("i", { style: `--c: var(${s.color})` }), s.name)),
  );
}

async function refreshCounts() {
  const answer = await get("/v1/stats");
  // Counts by state from the store (they survive restarts), with the live
  // running and retrying counts; older servers only had the run counters.
  const stats = answer.store ?? answer;
  const t = Date.now();
  history.push({ t, stats });
  while (history.length > 2 && history[0].t < t - WINDOW_MS - 2000) history.shift();
  const next = {};
  const missing = [];
  for (const s of STATES) {
    if (typeof stats[s] === "number") next[s] = { n: stats[s] };
    else missing.push(s);
  }
  const listed = await Promise.allSettled(missing.map((s) => countInState(s)));
  missing.forEach((s, i) => {
    if (listed[i].status === "fulfilled") next[s] = listed[i].value;
  });
  counts = next;
  renderCounts($("counts"), counts, recentRates(), table.state, (s) => table.setState(s));
  drawChart();
}

async function refreshTable() {
  renderCounts($("counts"), counts, recentRates(), table.state, (s) => table.setState(s));
  try {
    await table.refresh();
  } catch (e) {
    fill($("task-rows"), h("tr", {}, h("td", { colspan: 9, class: "empty" }, `Unavailable: ${e.message}`)));
  }
  selectRow(table.selected);
}

const panels = [
  refreshCounts,
  refreshTable,
  async () => {
    try {
      const { executors } = await get("/v1/executors");
      renderExecutors($("executors"), $("executors-summary"), executors);
    } catch (e) {
      panelError($("executors"), e);
    }
  },
  async () => {
    try {
      renderAlerts($("alerts"), $("alerts-summary"), await get("/v1/alerts"));
    } catch (e) {
      panelError($("alerts"), e);
    }
  },
  async () => {
    try {
      renderQueries($("queries"), await get("/v1/queries"));
    } catch (e) {
      panelError($("queries"), e);
    }
  },
  async () => {
    try {
      const { models } = await get("/v1/models");
      renderModels($("models"), $("models-summary"), models);
    } catch (e) {
      panelError($("models"), e);
    }
  },
  () => detail.refresh(),
];

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
}

/** Shows the sign-in form (auth is on and this tab has no valid token). */
function askForToken(rejected) {
  const form = $("signin");
  form.hidden = false;
  $("signin-note").textContent = rejected ? "That token was refused." : "This API needs a token (role operator or admin).";
  setStatus("error", "sign in to see the pipeline");
}

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken($("signin-token").value.trim());
  $("signin-token").value = "";
  $("signin").hidden = true;
  if (wake) wake();
});

async function tick() {
  const results = await Promise.allSettled(panels.map((p) => p()));
  // The stats call doubles as the liveness check.
  if (results[0].status === "fulfilled") {
    $("signin").hidden = true;
    setStatus("live", `live · updated ${clock(Date.now() * 1000).slice(0, 8)}`);
  } else if (results[0].reason.status === 401) askForToken(Boolean(token()));
  else setStatus("error", `API unreachable (${results[0].reason.message}) · retrying`);
}

async function loop() {
  for (;;) {
    const started = Date.now();
    await tick();
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, Math.max(100, POLL_MS - (Date.now() - started)));
    });
  }
}

drawLegend();
window.addEventListener("resize", drawChart);
document.addEventListener("visibilitychange", () => wake && wake());
loop();
