// The task table (filters, paging) and the task detail drawer.

import { get, del, tasksPath } from "./api.js";
import { h, fill, badge, count, micros, clock, ago, bytes } from "./dom.js";

const PAGE = 25;

function duration(t) {
  if (t.started_at_us && t.finished_at_us) return micros(t.finished_at_us - t.started_at_us);
  if (t.started_at_us && t.state === "running") return `${micros(Date.now() * 1000 - t.started_at_us)}…`;
  return "–";
}

/** The task table: its filters, cursor stack and rows. */
export class TaskTable {
  constructor({ onOpen }) {
    this.onOpen = onOpen;
    this.form = document.getElementById("filters");
    this.rows = document.getElementById("task-rows");
    this.empty = document.getElementById("tasks-empty");
    this.info = document.getElementById("page-info");
    this.first = document.getElementById("page-first");
    this.next = document.getElementById("page-next");
    this.cursors = [null];
    this.nextCursor = null;
    this.selected = null;
    this.onChange = () => {};
    const changed = () => {
      this.cursors = [null];
      this.onChange();
    };
    this.form.addEventListener("change", changed);
    this.form.addEventListener("input", debounce(changed, 300));
    this.form.addEventListener("submit", (e) => e.preventDefault());
    this.first.addEventListener("click", () => {
      this.cursors = [null];
      this.onChange();
    });
    this.next.addEventListener("click", () => {
      if (!this.nextCursor) return;
      this.cursors.push(this.nextCursor);
      this.onChange();
    });
  }

  /** The state filter in use. */
  get state() {
    return this.form.elements.state.value;
  }

  /** Sets the state filter (from a click on a count). */
  setState(state) {
    this.form.elements.state.value = state;
    this.cursors = [null];
    this.onChange();
  }

  /** Fetches and draws the current page. */
  async refresh() {
    const f = this.form.elements;
    const path = tasksPath({
      state: f.state.value,
      tenant: f.tenant.value.trim(),
      kind: f.kind.value.trim(),
      limit: PAGE,
      order: f.desc.checked ? "desc" : "asc",
      cursor: this.cursors[this.cursors.length - 1],
    });
    const page = await get(path);
    this.nextCursor = page.next_cursor || null;
    this.render(page.tasks);
  }

  render(tasks) {
    const pageNo = this.cursors.length;
    this.info.textContent = `page ${pageNo} · ${tasks.length} shown`;
    this.first.disabled = pageNo === 1;
    this.next.disabled = !this.nextCursor;
    this.empty.hidden = tasks.length > 0;
    fill(
      this.rows,
      tasks.map((t) =>
        h(
          "tr",
          {
            "data-id": t.id,
            "data-state": t.state,
            class: this.selected === t.id ? "selected" : "",
            onclick: () => this.onOpen(t.id),
          },
          h("td", { class: "mono" }, t.id),
          h("td", {}, badge(t.state)),
          h("td", {}, t.kind),
          h("td", {}, t.tenant),
          h("td", { class: "mono" }, t.executor ?? "–"),
          h("td", { class: "num" }, count(t.attempts)),
          h("td", { title: clock(t.submitted_at_us) }, ago(t.submitted_at_us)),
          h("td", { class: "num" }, duration(t)),
          h("td", { class: "reason", title: t.reason ?? "" }, t.reason ?? ""),
        ),
      ),
    );
  }
}

function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

const FINAL = new Set(["succeeded", "failed", "timed_out", "cancelled", "rejected"]);

/** The detail drawer of one task, refreshed while open. */
export class TaskDetail {
  constructor({ onClose }) {
    this.el = document.getElementById("detail");
    this.title = document.getElementById("detail-title");
    this.body = document.getElementById("detail-body");
    this.id = null;
    this.note = "";
    document.getElementById("detail-close").addEventListener("click", () => {
      this.close();
      onClose();
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.id) {
        this.close();
        onClose();
      }
    });
  }

  open(id) {
    this.id = id;
    this.note = "";
    this.title.textContent = id;
    fill(this.body, h("p", { class: "muted" }, "Loading…"));
    this.el.hidden = false;
    return this.refresh();
  }

  close() {
    this.id = null;
    this.el.hidden = true;
  }

  async refresh() {
    if (!this.id) return;
    const id = this.id;
    try {
      const t = await get(`/v1/tasks/${encodeURIComponent(id)}`);
      if (this.id === id) this.render(t);
    } catch (e) {
      if (this.id === id) fill(this.body, h("p", { class: "muted" }, String(e.message)));
    }
  }

  async cancel(id) {
    try {
      await del(`/v1/tasks/${encodeURIComponent(id)}`);
      this.note = "Cancel requested.";
    } catch (e) {
      this.note = `Cancel refused: ${e.message}`;
    }
    await this.refresh();
  }

  render(t) {
    const row = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
    const result = t.result || null;
    const steps = [
      ["submitted", t.submitted_at_us],
      ["started", t.started_at_us],
      ["next attempt", t.next_attempt_at_us],
      ["finished", t.finished_at_us],
    ].filter(([, us]) => us);
    fill(
      this.body,
      h(
        "section",
        {},
        h("div", {}, badge(t.state), " ", h("span", { class: "muted" }, `${t.kind} · tenant ${t.tenant}`)),
        !FINAL.has(t.state)
          ? h("p", {}, h("button", { type: "button", onclick: () => this.cancel(t.id) }, "Cancel task"))
          : null,
        this.note ? h("p", { class: "muted" }, this.note) : null,
      ),
      h(
        "section",
        {},
        h("h3", {}, "Execution"),
        h(
          "dl",
          { class: "kv" },
          row("attempts", count(t.attempts)),
          row("executor", t.executor ?? "–"),
          row("exit code", t.exit_code ?? "–"),
          row("output", bytes(t.output_bytes)),
          row("run time", t.started_at_us && t.finished_at_us ? micros(t.finished_at_us - t.started_at_us) : "–"),
          row("end to end", t.finished_at_us && t.submitted_at_us ? micros(t.finished_at_us - t.submitted_at_us) : "–"),
        ),
      ),
      steps.length
        ? h(
            "section",
            {},
            h("h3", {}, "Timeline"),
            h(
              "div",
              { class: "timeline" },
              steps.map(([k, us]) => h("div", { class: "step" }, h("span", { class: "muted" }, k), h("span", { class: "mono" }, `${clock(us)} (${ago(us)})`))),
            ),
          )
        : null,
      t.reason ? h("section", {}, h("h3", {}, "Reason"), h("pre", { class: "output" }, t.reason)) : null,
      result && result.value !== undefined
        ? h("section", {}, h("h3", {}, "Result"), h("pre", { class: "output" }, JSON.stringify(result.value, null, 2)))
        : null,
      result && result.stdout ? h("section", {}, h("h3", {}, "stdout"), h("pre", { class: "output" }, result.stdout)) : null,
      result && result.stderr ? h("section", {}, h("h3", {}, "stderr"), h("pre", { class: "output" }, result.stderr)) : null,
      result && result.truncated ? h("p", { class: "muted" }, "Output truncated (the tail is kept).") : null,
    );
  }
}
