//! Which roles may do what: every endpoint maps to an [`Action`], and each
//! action to the roles allowed to take it. What a role may see within an
//! allowed action (a submitter only its own tenant's tasks) is the
//! handlers' part.
//!
//! | action | endpoints | roles |
//! |---|---|---|
//! | `public` | `GET /healthz`, `/`, `/ui/…` (static files only) | anyone |
//! | `submit` | `POST /v1/tasks` | submitter, operator, admin |
//! | `read_tasks` | `GET /v1/tasks`, `GET /v1/tasks/{id}` | submitter, operator, admin |
//! | `cancel` | `DELETE /v1/tasks/{id}` | submitter, operator, admin |
//! | `reserve` | `POST /v1/reservations`, `GET`/`DELETE /v1/reservations/{id}` | submitter, operator, admin |
//! | `run_executor` | `POST /v1/executors`, `DELETE /v1/executors/{id}`, heartbeat, claim, outcome | agent, operator, admin |
//! | `operate` | `GET /v1/stats`, `/v1/executors`, `/v1/reservations`, `/v1/models`, `/metrics`, `/v1/queries…`, `/v1/alerts`, `/v1/lineage/…`, anything else | operator, admin |
//! | `manage_tokens` | `/v1/tokens…` | admin |

use axum::http::Method;

use super::principal::Role;

/// What a request does, as far as permissions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Needs no credential.
    Public,
    /// Submit tasks.
    Submit,
    /// Read task records.
    ReadTasks,
    /// Cancel a task.
    Cancel,
    /// Take, read or release a reservation.
    Reserve,
    /// Be an executor: join, heartbeat, leave, claim work, report outcomes.
    RunExecutor,
    /// See and steer the whole system.
    Operate,
    /// Mint, list and revoke API tokens.
    ManageTokens,
}

impl Action {
    /// The action `method` on `path` takes.
    pub fn of(method: &Method, path: &str) -> Action {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::GET, ["healthz"] | [""] | ["ui", ..]) => Action::Public,
            (_, ["v1", "tokens", ..]) => Action::ManageTokens,
            (&Method::POST, ["v1", "tasks"]) => Action::Submit,
            (&Method::GET, ["v1", "tasks"] | ["v1", "tasks", _]) => Action::ReadTasks,
            (&Method::DELETE, ["v1", "tasks", _]) => Action::Cancel,
            (&Method::POST, ["v1", "reservations"]) => Action::Reserve,
            (&Method::GET | &Method::DELETE, ["v1", "reservations", _]) => Action::Reserve,
            (&Method::POST, ["v1", "executors"]) => Action::RunExecutor,
            (&Method::DELETE, ["v1", "executors", _]) => Action::RunExecutor,
            (&Method::POST, ["v1", "executors", _, "heartbeat" | "claim"]) => Action::RunExecutor,
            (&Method::POST, ["v1", "executors", _, "tasks", _, "outcome"]) => Action::RunExecutor,
            _ => Action::Operate,
        }
    }

    /// Whether `role` may take this action.
    pub fn allows(self, role: Role) -> bool {
        match self {
            Action::Public => true,
            Action::Submit | Action::ReadTasks | Action::Cancel | Action::Reserve => {
                matches!(role, Role::Submitter | Role::Operator | Role::Admin)
            }
            Action::RunExecutor => matches!(role, Role::Agent | Role::Operator | Role::Admin),
            Action::Operate => matches!(role, Role::Operator | Role::Admin),
            Action::ManageTokens => role == Role::Admin,
        }
    }

    /// The action's word, as the audit log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Public => "public",
            Action::Submit => "submit",
            Action::ReadTasks => "read_tasks",
            Action::Cancel => "cancel",
            Action::Reserve => "reserve",
            Action::RunExecutor => "run_executor",
            Action::Operate => "operate",
            Action::ManageTokens => "manage_tokens",
        }
    }
}

/// Whether `method` changes something (and so is audited).
pub fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_map_to_their_actions() {
        let cases = [
            (Method::GET, "/healthz", Action::Public),
            (Method::GET, "/ui/app.js", Action::Public),
            (Method::GET, "/", Action::Public),
            (Method::POST, "/v1/tasks", Action::Submit),
            (Method::GET, "/v1/tasks", Action::ReadTasks),
            (Method::GET, "/v1/tasks/t1", Action::ReadTasks),
            (Method::DELETE, "/v1/tasks/t1", Action::Cancel),
            (Method::POST, "/v1/reservations", Action::Reserve),
            (Method::GET, "/v1/reservations", Action::Operate),
            (Method::DELETE, "/v1/reservations/r1", Action::Reserve),
            (Method::POST, "/v1/executors", Action::RunExecutor),
            (Method::POST, "/v1/executors/e1/claim", Action::RunExecutor),
            (
                Method::POST,
                "/v1/executors/e1/tasks/t1/outcome",
                Action::RunExecutor,
            ),
            (Method::GET, "/v1/executors", Action::Operate),
            (Method::GET, "/metrics", Action::Operate),
            (Method::GET, "/v1/lineage/tasks/t1", Action::Operate),
            (Method::POST, "/v1/tokens", Action::ManageTokens),
            (Method::POST, "/healthz", Action::Operate),
            (Method::GET, "/v1/unheard-of", Action::Operate),
        ];
        for (method, path, action) in cases {
            assert_eq!(Action::of(&method, path), action, "{method} {path}");
        }
    }

    #[test]
    fn roles_get_what_the_table_says() {
        assert!(Action::Submit.allows(Role::Submitter));
        assert!(!Action::Submit.allows(Role::Agent));
        assert!(!Action::Operate.allows(Role::Submitter));
        assert!(Action::RunExecutor.allows(Role::Agent));
        assert!(!Action::RunExecutor.allows(Role::Submitter));
        assert!(!Action::ManageTokens.allows(Role::Operator));
        assert!(Action::ManageTokens.allows(Role::Admin));
    }
}
