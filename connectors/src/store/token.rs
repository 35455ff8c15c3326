//! API tokens as the store keeps them: who a token speaks for and the
//! argon2 hash of its secret, never the secret itself.
//!
//! The runtime's auth layer mints a token (`tw_<id>_<secret>`), stores its
//! [`TokenRecord`] here, and on each call looks the record up by the id the
//! token carries and verifies the secret against [`TokenRecord::hash`].
//! Revoking sets [`TokenRecord::revoked_at_us`]; the record stays, so the
//! audit trail can still name the token.

use serde::{Deserialize, Serialize};

/// One API token's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token's public id (the part of the token before its secret).
    pub id: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// Its role word (`submitter`, `operator`, `admin`, `agent`).
    pub role: String,
    /// A label for people (who or what holds it).
    #[serde(default)]
    pub name: String,
    /// The argon2 hash of the secret, as a PHC string.
    pub hash: String,
    /// When it was created, microseconds since the Unix epoch.
    pub created_at_us: u64,
    /// When it stops being accepted, if ever.
    #[serde(default)]
    pub expires_at_us: Option<u64>,
    /// When it was revoked, if it was.
    #[serde(default)]
    pub revoked_at_us: Option<u64>,
}

impl TokenRecord {
    /// Whether the token is accepted at `now_us`: not revoked, not expired.
    pub fn is_active(&self, now_us: u64) -> bool {
        self.revoked_at_us.is_none() && self.expires_at_us.is_none_or(|end| now_us < end)
    }
}
