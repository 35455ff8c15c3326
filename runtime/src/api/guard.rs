//! The middleware in front of every endpoint: authenticate, authorize,
//! audit (see [`crate::auth`]).
//!
//! A public request passes untouched. Any other gets its [`Principal`]
//! from the [`Authenticator`] (`401` with `WWW-Authenticate: Bearer` when
//! the credential is missing or wrong, never a partial answer), is checked
//! against the [`Action`]'s roles (`403`), and runs with the principal in
//! its extensions (a [`crate::auth::Principal`]) for the handler's tenant
//! scoping. A call that changes
//! something is then written to the [`AuditLog`] with its status.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use tidewater_operators::model::now_micros;

use super::responses::error;
use crate::auth::audit::target_of;
use crate::auth::policy::is_mutating;
use crate::auth::{Action, AuditEntry, AuditLog, Authenticator};

/// What the middleware needs.
pub struct Guard {
    /// How callers are authenticated.
    pub authenticator: Arc<Authenticator>,
    /// Where mutating calls are recorded.
    pub audit: AuditLog,
}

/// The task ids a response took in, for the audit entry (set by the
/// submission handler).
#[derive(Clone, Debug, Default)]
pub struct AuditedTasks(pub Vec<String>);

/// The middleware: see the module docs.
pub async fn guard(State(guard): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    let action = Action::of(request.method(), request.uri().path());
    if action == Action::Public {
        return next.run(request).await;
    }
    let principal = match guard.authenticator.authenticate(request.headers()).await {
        Ok(principal) => principal,
        Err(e) if e.is_callers() => {
            let mut answer = error(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string());
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tidewater\""),
            );
            return answer;
        }
        Err(e) => {
            tracing::error!(error = %e, "authenticating a request");
            return error(StatusCode::SERVICE_UNAVAILABLE, "auth", e.to_string());
        }
    };
    if !action.allows(principal.role) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "role {} may not {}",
                principal.role,
                action.as_str().replace('_', " ")
            ),
        );
    }
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    request.extensions_mut().insert(principal.clone());
    let response = next.run(request).await;
    if is_mutating(&method) {
        let tasks = response
            .extensions()
            .get::<AuditedTasks>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        guard.audit.record(&AuditEntry {
            at_us: now_micros(),
            tenant: principal.tenant.clone(),
            role: principal.role.as_str(),
            credential: principal.credential.clone(),
            action: action.as_str(),
            method: method.to_string(),
            target: target_of(&path),
            path,
            tasks,
            status: response.status().as_u16(),
        });
    }
    response.into_response()
}
