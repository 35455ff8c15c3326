//! From a request's `Authorization` header to a [`Principal`].

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;

use tidewater_connectors::store::{StoreError, TaskStore};

use super::api_token::TokenBook;
use super::config::{AuthConfig, AuthMode};
use super::jwt::JwtVerifier;
use super::principal::Principal;

/// Why a caller was not authenticated (or a token could not be minted).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("this endpoint needs `Authorization: Bearer <token>`")]
    Missing,
    /// The credential is not shaped like a token of this mode.
    #[error("the bearer credential is not a Tidewater API token (tw_<id>_<secret>)")]
    Malformed,
    /// No token has the id the credential carries.
    #[error("unknown token")]
    UnknownToken,
    /// The secret does not match the token's.
    #[error("wrong token secret")]
    WrongSecret,
    /// The token was revoked.
    #[error("the token was revoked")]
    Revoked,
    /// The token's time is up.
    #[error("the token has expired")]
    Expired,
    /// A JWT that did not verify, or lacks the claims needed.
    #[error("JWT refused: {0}")]
    Jwt(String),
    /// A stored token or a claim that names no valid role or tenant.
    #[error("{0}")]
    Invalid(String),
    /// A request to mint a token that cannot be honoured.
    #[error("{0}")]
    BadRequest(String),
    /// Hashing or reading a hash failed.
    #[error("token hash: {0}")]
    Hash(String),
    /// The JWT key could not be read.
    #[error("JWT key {path}: {detail}")]
    Key {
        /// The key file.
        path: String,
        /// Why.
        detail: String,
    },
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// Whether the caller's credential is at fault (`401`), rather than
    /// this process (`503`/`500`).
    pub fn is_callers(&self) -> bool {
        !matches!(
            self,
            AuthError::Store(_) | AuthError::Hash(_) | AuthError::Key { .. }
        )
    }
}

/// How this process authenticates callers.
pub enum Authenticator {
    /// Everyone is [`Principal::anonymous`].
    Off,
    /// API tokens from the store.
    Tokens(Arc<TokenBook>),
    /// JWTs.
    Jwt(Box<JwtVerifier>),
}

impl Authenticator {
    /// The authenticator `config` asks for, for an API on `listen`, with
    /// tokens kept in `store`.
    pub fn from_config(
        config: &AuthConfig,
        listen: &str,
        store: Arc<dyn TaskStore>,
    ) -> Result<Self, AuthError> {
        Ok(match config.effective_mode(listen) {
            AuthMode::None => Authenticator::Off,
            AuthMode::Token => Authenticator::Tokens(Arc::new(TokenBook::new(
                store,
                Duration::from_millis(config.revalidate_ms),
            ))),
            AuthMode::Jwt => {
                let jwt = config.jwt.as_ref().ok_or_else(|| {
                    AuthError::Invalid("auth.mode = \"jwt\" needs an [auth.jwt] section".into())
                })?;
                Authenticator::Jwt(Box::new(JwtVerifier::new(jwt)?))
            }
        })
    }

    /// The mode in force.
    pub fn mode(&self) -> AuthMode {
        match self {
            Authenticator::Off => AuthMode::None,
            Authenticator::Tokens(_) => AuthMode::Token,
            Authenticator::Jwt(_) => AuthMode::Jwt,
        }
    }

    /// The token book, in token mode.
    pub fn tokens(&self) -> Option<&Arc<TokenBook>> {
        match self {
            Authenticator::Tokens(book) => Some(book),
            _ => None,
        }
    }

    /// The caller that sent `headers`.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        if let Authenticator::Off = self {
            return Ok(Principal::anonymous());
        }
        let credential = bearer(headers).ok_or(AuthError::Missing)?;
        match self {
            Authenticator::Off => Ok(Principal::anonymous()),
            Authenticator::Jwt(verifier) => verifier.verify(credential),
            Authenticator::Tokens(book) => {
                // Most calls come with a token verified moments ago.
                if let Some(principal) = book.recently_verified(credential) {
                    return Ok(principal);
                }
                let book = Arc::clone(book);
                let credential = credential.to_string();
                tokio::task::spawn_blocking(move || book.verify(&credential))
                    .await
                    .map_err(|e| AuthError::Hash(e.to_string()))?
            }
        }
    }
}

/// The credential of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
        .filter(|c| !c.is_empty())
}
