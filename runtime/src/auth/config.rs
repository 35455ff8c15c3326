//! The `[auth]` section: how callers of the HTTP API prove who they are.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How callers authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication: every caller may do everything. Allowed only
    /// when the API listens on loopback.
    None,
    /// API tokens minted with `tidewater token create`, kept hashed in the
    /// store.
    Token,
    /// JSON Web Tokens signed with the key of `auth.jwt`.
    Jwt,
}

impl AuthMode {
    /// The mode's config word.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Token => "token",
            AuthMode::Jwt => "jwt",
        }
    }
}

/// The `[auth]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How callers authenticate. Unset: `none` when the API listens on
    /// loopback (the embedded quick start), `token` otherwise.
    pub mode: Option<AuthMode>,
    /// JWT verification, for `mode = "jwt"`.
    pub jwt: Option<JwtConfig>,
    /// A file to append the audit log to, one JSON object per line (it is
    /// also emitted as `tracing` events with target `tidewater::audit`).
    pub audit_log: Option<PathBuf>,
    /// How long a verified API token is trusted before its store record is
    /// read again (so a revocation made elsewhere takes effect), ms.
    pub revalidate_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: None,
            jwt: None,
            audit_log: None,
            revalidate_ms: 2_000,
        }
    }
}

impl AuthConfig {
    /// The mode in force for an API listening on `listen`.
    pub fn effective_mode(&self, listen: &str) -> AuthMode {
        self.mode.unwrap_or(if is_loopback(listen) {
            AuthMode::None
        } else {
            AuthMode::Token
        })
    }
}

/// Whether `listen` (`host:port`) binds loopback addresses only.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = listen.rsplit_once(':').map_or(listen, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// How JWTs are verified.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The signature algorithm: `HS256`, `HS384`, `HS512` (a shared
    /// secret), `RS256`, `RS384`, `RS512`, `ES256`, `ES384` or `EdDSA` (a
    /// PEM public key).
    pub algorithm: String,
    /// The file holding the secret (raw bytes) or the PEM public key.
    pub key_file: PathBuf,
    /// The `iss` claim required, if any.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The `aud` claim required, if any.
    #[serde(default)]
    pub audience: Option<String>,
    /// The claim naming the caller's tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// The claim naming the caller's role.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

fn default_role_claim() -> String {
    "role".into()
}

fn default_leeway() -> u64 {
    30
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_told_apart() {
        for listen in [
            "127.0.0.1:8080",
            "[::1]:80",
            "localhost:9000",
            "127.3.4.5:1",
        ] {
            assert!(is_loopback(listen), "{listen}");
        }
        for listen in ["0.0.0.0:8080", "[::]:80", "10.0.0.2:8080", "example.com:80"] {
            assert!(!is_loopback(listen), "{listen}");
        }
    }

    #[test]
    fn unset_mode_is_none_on_loopback_and_token_elsewhere() {
        let config = AuthConfig::default();
        assert_eq!(config.effective_mode("127.0.0.1:8080"), AuthMode::None);
        assert_eq!(config.effective_mode("0.0.0.0:8080"), AuthMode::Token);
        let jwt = AuthConfig {
            mode: Some(AuthMode::Jwt),
            ..AuthConfig::default()
        };
        assert_eq!(jwt.effective_mode("127.0.0.1:8080"), AuthMode::Jwt);
    }
}
