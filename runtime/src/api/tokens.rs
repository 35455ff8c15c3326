//! `/v1/tokens`: API tokens, for admins (in `auth.mode = "token"`).
//!
//! - `POST /v1/tokens` `{"tenant", "role", "name", "expires_in_s"}`: mints
//!   one; `201` with `{"token", ...record}`, the only time the secret is
//!   shown.
//! - `GET /v1/tokens`: every token's record (never hashes or secrets).
//! - `DELETE /v1/tokens/{id}`: revokes it (`404` if unknown).
//!
//! In other modes these answer `409`: there are no API tokens to manage.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use tidewater_connectors::store::TokenRecord;
use tidewater_operators::model::now_micros;

use super::responses::error;
use crate::auth::{AuthError, Authenticator, Role, TokenBook};

/// A token's record as the API shows it: everything but the hash.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenView {
    /// Public id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Role word.
    pub role: String,
    /// Label.
    pub name: String,
    /// Created, µs since the epoch.
    pub created_at_us: u64,
    /// Expiry, if any.
    pub expires_at_us: Option<u64>,
    /// Revocation time, if revoked.
    pub revoked_at_us: Option<u64>,
}

impl From<TokenRecord> for TokenView {
    fn from(r: TokenRecord) -> Self {
        TokenView {
            id: r.id,
            tenant: r.tenant,
            role: r.role,
            name: r.name,
            created_at_us: r.created_at_us,
            expires_at_us: r.expires_at_us,
            revoked_at_us: r.revoked_at_us,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    tenant: String,
    role: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires_in_s: Option<u64>,
}

/// The token routes.
pub fn routes(authenticator: Arc<Authenticator>) -> Router {
    Router::new()
        .route("/v1/tokens", post(mint).get(list))
        .route("/v1/tokens/{id}", delete(revoke))
        .with_state(authenticator)
}

/// The answer when this mode has no API tokens.
fn no_tokens(authenticator: &Authenticator) -> Response {
    error(
        StatusCode::CONFLICT,
        "no_tokens",
        format!(
            "auth.mode is {:?}: API tokens are used only with auth.mode = \"token\"",
            authenticator.mode().as_str()
        ),
    )
}

/// Runs a token-book call off the async threads.
async fn blocking<R: Send + 'static>(
    book: Arc<TokenBook>,
    call: impl FnOnce(&TokenBook) -> Result<R, AuthError> + Send + 'static,
) -> Result<R, Response> {
    match tokio::task::spawn_blocking(move || call(&book)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(AuthError::BadRequest(reason))) => {
            Err(error(StatusCode::BAD_REQUEST, "invalid", reason))
        }
        Ok(Err(e)) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store",
            e.to_string(),
        )),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
    }
}

async fn mint(State(auth): State<Arc<Authenticator>>, body: axum::body::Bytes) -> Response {
    let Some(book) = auth.tokens().cloned() else {
        return no_tokens(&auth);
    };
    let request: MintRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    let role = match request.role.parse::<Role>() {
        Ok(role) => role,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    let expires = request
        .expires_in_s
        .map(|s| now_micros().saturating_add(s.saturating_mul(1_000_000)));
    let minted = blocking(book, move |book| {
        book.mint(&request.tenant, role, &request.name, expires)
    })
    .await;
    match minted {
        Ok(minted) => {
            let mut body = serde_json::to_value(TokenView::from(minted.record)).unwrap_or_default();
            body["token"] = serde_json::Value::String(minted.token);
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(answer) => answer,
    }
}

async fn list(State(auth): State<Arc<Authenticator>>) -> Response {
    let Some(book) = auth.tokens().cloned() else {
        return no_tokens(&auth);
    };
    match blocking(book, |book| book.list()).await {
        Ok(records) => {
            let views: Vec<TokenView> = records.into_iter().map(TokenView::from).collect();
            Json(serde_json::json!({ "tokens": views })).into_response()
        }
        Err(answer) => answer,
    }
}

async fn revoke(State(auth): State<Arc<Authenticator>>, Path(id): Path<String>) -> Response {
    let Some(book) = auth.tokens().cloned() else {
        return no_tokens(&auth);
    };
    let lookup = id.clone();
    match blocking(book, move |book| book.revoke(&lookup)).await {
        Ok(Some(record)) => Json(TokenView::from(record)).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no token with id {id:?}"),
        ),
        Err(answer) => answer,
    }
}
