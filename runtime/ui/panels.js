// Rendering of the read-only panels: state counts, executors, alerts,
// continuous queries and the learner's model versions.

import { h, fill, badge, count, rate, millis, num, ago } from "./dom.js";
import { sparkline } from "./chart.js";

/** Task states in the order the counts show them. */
export const STATES = ["queued", "running", "retrying", "succeeded", "failed", "timed_out", "cancelled", "rejected"];

/**
 * The row of state counts.
 * @param {Record<string, {n: number, capped?: boolean} | undefined>} counts
 * @param {Record<string, number>} rates  finals per second by state
 * @param {string} selected  the state filter in use
 * @param {(state: string) => void} onPick
 */
export function renderCounts(el, counts, rates, selected, onPick) {
  fill(
    el,
    STATES.map((state) => {
      const c = counts[state];
      const value = c === undefined ? "–" : `${count(c.n)}${c.capped ? "+" : ""}`;
      const sub = rates[state] !== undefined ? `${rate(rates[state])}/s` : state === "running" || state === "queued" ? "now" : "";
      return h(
        "div",
        {
          class: `count${selected === state ? " selected" : ""}`,
          "data-state": state,
          "data-count": c === undefined ? "" : c.n,
          style: `--c: var(--${state})`,
          title: `Show ${state.replace("_", " ")} tasks`,
          onclick: () => onPick(selected === state ? "" : state),
        },
        h("div", { class: "label" }, state.replace("_", " ")),
        h("div", { class: "value" }, value),
        h("div", { class: "sub" }, sub),
      );
    }),
  );
}

function bar(label, share, text) {
  const pct = Math.round(Math.min(1, Math.max(0, share)) * 100);
  const heat = share >= 0.9 ? "hot" : share >= 0.7 ? "warm" : "";
  return [
    h("span", {}, label),
    h("div", { class: "bar", title: `${pct}%` }, h("span", { class: heat, style: `width: ${pct}%` })),
    h("span", { class: "v" }, text),
  ];
}

const cores = (milli) => Number((milli / 1000).toFixed(milli % 1000 === 0 ? 0 : 1));
const gib = (mib) => (mib >= 1024 ? `${Number((mib / 1024).toFixed(1))} GiB` : `${mib} MiB`);

/** Executors with utilization bars and their GPU devices. */
export function renderExecutors(el, summaryEl, executors) {
  const active = executors.filter((e) => e.state === "active").length;
  const running = executors.reduce((n, e) => n + e.running.length, 0);
  summaryEl.textContent = `${active} active of ${executors.length} · ${running} running`;
  if (executors.length === 0) {
    fill(el, h("p", { class: "empty" }, "No executors."));
    return;
  }
  fill(
    el,
    executors.map((e) => {
      const cap = e.capacity;
      const alloc = e.allocated;
      const heartbeat =
        e.heartbeat_age_ms === null || e.heartbeat_age_ms === undefined
          ? "static"
          : `heartbeat ${millis(e.heartbeat_age_ms)} ago · ttl ${millis(e.heartbeat_ttl_ms)}`;
      const cls = e.labels && e.labels.class ? ` · class ${e.labels.class}` : "";
      // Whole devices are drawn busy in order; fractional shares fill the next one.
      let gpuLeft = alloc.gpu_milli;
      const devices = cap.devices.map((d) => {
        const used = Math.min(1000, gpuLeft);
        gpuLeft -= used;
        return h(
          "span",
          { class: `device${used > 0 ? " busy" : ""}`, title: `GPU ${d.index}: ${d.model || "gpu"}` },
          `gpu${d.index} ${d.model}`,
        );
      });
      return h(
        "div",
        { class: "executor", "data-executor": e.id },
        h(
          "div",
          { class: "top" },
          h("span", { class: "name" }, e.id),
          h("span", {}, h("span", { class: "meta" }, `${e.running.length} running · `), badge(e.state)),
        ),
        h("div", { class: "meta" }, `${e.origin}${cls} · ${heartbeat}`),
        h(
          "div",
          { class: "bars" },
          bar("cpu", e.share.cpu, `${cores(alloc.cpu_milli)} / ${cores(cap.cpu_milli)} cores`),
          bar("mem", e.share.memory, `${gib(alloc.memory_mib)} / ${gib(cap.memory_mib)}`),
          cap.gpus > 0 ? bar("gpu", e.share.gpu, `${num(alloc.gpu_milli / 1000)} / ${cap.gpus}`) : null,
        ),
        devices.length ? h("div", { class: "devices" }, devices) : null,
      );
    }),
  );
}

const groupText = (group) =>
  Object.entries(group || {})
    .map(([k, v]) => `${k}=${v}`)
    .join(", ") || "all";

/** Firing alerts, or an all-clear line. */
export function renderAlerts(el, summaryEl, alerts) {
  summaryEl.textContent = `${alerts.firing.length} firing · ${alerts.recent.length} recent events`;
  if (alerts.firing.length === 0) {
    fill(el, h("div", { class: "ok" }, "● No alert is firing."));
    return;
  }
  fill(
    el,
    alerts.firing.map((a) =>
      h(
        "div",
        { class: "alert", "data-alert": a.alert },
        h("div", { class: "title" }, badge("firing"), " ", a.alert),
        h(
          "div",
          { class: "muted" },
          `${groupText(a.group)} · value ${num(a.value)} vs ${num(a.threshold)} · since ${new Date(a.since_ms).toLocaleTimeString()}`,
        ),
      ),
    ),
  );
}

/** Every continuous query's latest rows. */
export function renderQueries(el, queries) {
  if (queries.length === 0) {
    fill(el, h("p", { class: "empty" }, "No continuous queries configured."));
    return;
  }
  fill(
    el,
    queries.map((q) => {
      const keys = [...new Set(q.rows.flatMap((r) => Object.keys(r.key)))];
      const values = [...new Set(q.rows.flatMap((r) => Object.keys(r.values)))];
      const rows = q.rows.slice(0, 12);
      return h(
        "div",
        { class: "query", "data-query": q.name },
        h(
          "div",
          {},
          h("span", { class: "qname" }, q.name),
          // Epochs are wall-clock milliseconds: say how fresh the result is.
          h("span", { class: "muted", title: `exact as of epoch ${q.as_of ?? "–"}` }, ` · as of ${q.as_of ? ago(q.as_of * 1000) : "–"} · ${q.rows.length} groups`),
        ),
        rows.length === 0
          ? h("p", { class: "muted" }, "No rows yet.")
          : h(
              "table",
              {},
              h("thead", {}, h("tr", {}, keys.map((k) => h("th", {}, k)), values.map((v) => h("th", { class: "num" }, v)))),
              h(
                "tbody",
                {},
                rows.map((r) => h("tr", {}, keys.map((k) => h("td", {}, r.key[k] ?? "")), values.map((v) => h("td", { class: "num" }, num(r.values[v]))))),
              ),
            ),
      );
    }),
  );
}

/** The metric that best shows a target's prediction error. */
function errorMetric(target, versions) {
  const has = (m) => versions.some((v) => v.metrics[m] !== undefined);
  if (target === "run_time" && has("median_abs_log_error")) return "median_abs_log_error";
  if (target === "failure" && has("accuracy")) return "accuracy";
  return has("mean_loss") ? "mean_loss" : has("batch_loss") ? "batch_loss" : null;
}

const TARGET_NAMES = { run_time: "Run time (log seconds)", failure: "Failure probability" };

/** Model versions per target, with a sparkline of their error. */
export function renderModels(el, summaryEl, models) {
  const total = models.reduce((n, m) => n + m.versions.length, 0);
  summaryEl.textContent = total ? `${total} versions` : "";
  const withVersions = models.filter((m) => m.versions.length > 0);
  if (withVersions.length === 0) {
    fill(el, h("p", { class: "empty" }, "No model version yet (the learner publishes once it has trained)."));
    return;
  }
  fill(
    el,
    withVersions.map((m) => {
      const latest = m.versions[m.versions.length - 1];
      const metric = errorMetric(m.target, m.versions);
      const canvas = h("canvas", { class: "spark", "aria-label": `${metric} by version` });
      const series = metric ? m.versions.map((v) => v.metrics[metric]) : [];
      requestAnimationFrame(() => sparkline(canvas, series, m.target === "failure" ? "--succeeded" : "--accent"));
      const metrics = Object.entries(latest.metrics).filter(([k]) => k !== "on_gpu");
      return h(
        "div",
        { class: "model", "data-target": m.target },
        h("div", {}, h("strong", {}, TARGET_NAMES[m.target] || m.target), h("span", { class: "muted" }, ` · v${latest.version}`)),
        metric ? h("div", { class: "muted" }, `${metric.replaceAll("_", " ")} by version`) : null,
        canvas,
        h(
          "dl",
          { class: "kv" },
          h("dt", {}, "trained on"),
          h("dd", {}, `${count(latest.trained_samples)} samples`),
          h("dt", {}, "shape"),
          h("dd", {}, `${latest.feature_dim} features${latest.hidden_dim ? ` · ${latest.hidden_dim} hidden` : " · linear"} · ${count(latest.parameters)} params`),
          h("dt", {}, "device"),
          h("dd", {}, latest.metrics.on_gpu ? "GPU" : "CPU"),
          metrics.map(([k, v]) => [h("dt", {}, k.replaceAll("_", " ")), h("dd", {}, num(v))]),
        ),
      );
    }),
  );
}
