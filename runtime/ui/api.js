// The HTTP API the dashboard reads: the same endpoints a script would use.

/** An answer that was not 2xx. */
export class ApiError extends Error {
  constructor(path, status, body) {
    super(`${path}: ${status}${body && body.reason ? ` ${body.reason}` : ""}`);
    this.status = status;
    this.body = body;
  }
}

// Where auth is on, the API wants `Authorization: Bearer <token>`. The
// token a person signs in with is kept for this browser tab only.
const TOKEN_KEY = "tidewater.token";

/** The token this tab signed in with ("" if none). */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/** Signs this tab in with `value` (or out, with ""). */
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const t = token();
  return t ? { ...extra, authorization: `Bearer ${t}` } : extra;
}

/** GETs `path` and parses its JSON answer. */
export async function get(path) {
  const response = await fetch(path, { headers: headers({ accept: "application/json" }), cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw new ApiError(path, response.status, body);
  return body;
}

/** DELETEs `path`. */
export async function del(path) {
  const response = await fetch(path, { method: "DELETE", headers: headers() });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(path, response.status, body);
  return body;
}

/** `/v1/tasks` with the given filters (empty ones left out). */
export function tasksPath(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `/v1/tasks?${s}` : "/v1/tasks";
}

/** How many tasks are in `state`, counted from the listing (at most 1000; `capped` if more). */
export async function countInState(state) {
  const page = await get(tasksPath({ state, limit: 1000 }));
  return { n: page.tasks.length, capped: Boolean(page.next_cursor) };
}
