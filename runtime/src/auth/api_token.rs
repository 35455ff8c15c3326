//! API tokens: minted here, kept hashed in the store, verified per call.
//!
//! A token reads `tw_<id>_<secret>`: the id (16 hex digits) is public and
//! keys the store's [`TokenRecord`]; the secret (64 hex digits, 256 random
//! bits) is shown once, when minted, and only its argon2id hash is kept.
//! Verifying costs one store read and one argon2 check, so a verified
//! token is cached in memory (keyed by the whole token) and trusted for
//! `auth.revalidate_ms` before its record is read again: a revocation
//! through this process takes effect at once, one made through another
//! process sharing the store within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

use tidewater_connectors::store::{TaskStore, TokenRecord};
use tidewater_operators::model::now_micros;

use super::authenticator::AuthError;
use super::principal::{Principal, Role};

/// What every token starts with.
const PREFIX: &str = "tw_";
/// Random bytes in a token's id and in its secret.
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
/// Verified tokens cached at most; the cache starts over when full.
const MAX_CACHED: usize = 10_000;

/// A token just minted: the only time its secret is known.
#[derive(Clone, Debug)]
pub struct MintedToken {
    /// The whole token, to hand to its holder.
    pub token: String,
    /// Its stored record.
    pub record: TokenRecord,
}

struct Cached {
    principal: Principal,
    hash: String,
    checked_at: Instant,
}

/// Mints, verifies, lists and revokes the API tokens kept in a store.
pub struct TokenBook {
    store: Arc<dyn TaskStore>,
    revalidate: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl TokenBook {
    /// The tokens of `store`, a verified one trusted for `revalidate`.
    pub fn new(store: Arc<dyn TaskStore>, revalidate: Duration) -> Self {
        TokenBook {
            store,
            revalidate,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Mints a token for `tenant` with `role`, valid until `expires_at_us`
    /// if given, and stores its record.
    pub fn mint(
        &self,
        tenant: &str,
        role: Role,
        name: &str,
        expires_at_us: Option<u64>,
    ) -> Result<MintedToken, AuthError> {
        if tenant.is_empty() {
            return Err(AuthError::BadRequest("a token needs a tenant".into()));
        }
        let id = random_hex(ID_BYTES);
        let secret = random_hex(SECRET_BYTES);
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
        let hash = Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .map_err(|e| AuthError::Hash(e.to_string()))?
            .to_string();
        let record = TokenRecord {
            id: id.clone(),
            tenant: tenant.to_string(),
            role: role.as_str().to_string(),
            name: name.to_string(),
            hash,
            created_at_us: now_micros(),
            expires_at_us,
            revoked_at_us: None,
        };
        self.store.put_token(&record)?;
        Ok(MintedToken {
            token: format!("{PREFIX}{id}_{secret}"),
            record,
        })
    }

    /// Revokes token `id`; `None` if there is no such token.
    pub fn revoke(&self, id: &str) -> Result<Option<TokenRecord>, AuthError> {
        let Some(mut record) = self.store.token(id)? else {
            return Ok(None);
        };
        if record.revoked_at_us.is_none() {
            record.revoked_at_us = Some(now_micros());
            self.store.put_token(&record)?;
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, cached| cached.principal.credential.as_deref() != Some(id));
        }
        Ok(Some(record))
    }

    /// Every token's record.
    pub fn list(&self) -> Result<Vec<TokenRecord>, AuthError> {
        Ok(self.store.tokens()?)
    }

    /// The caller `token` speaks for, if it was verified within the
    /// revalidation time: a memory lookup, no store read, no argon2.
    pub fn recently_verified(&self, token: &str) -> Option<Principal> {
        let cache = self.cache.lock().ok()?;
        let cached = cache.get(token)?;
        (cached.checked_at.elapsed() < self.revalidate).then(|| cached.principal.clone())
    }

    /// The caller that `token` speaks for. Blocking: reads the store and
    /// runs argon2 unless the token was verified lately.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let fresh = self.cache.lock().ok().and_then(|cache| {
            cache
                .get(token)
                .map(|c| (c.principal.clone(), c.hash.clone(), c.checked_at))
        });
        if let Some((principal, hash, checked_at)) = &fresh {
            if checked_at.elapsed() < self.revalidate {
                return Ok(principal.clone());
            }
            // Trusted before: read the record again, but skip argon2 when
            // it still holds the same hash.
            let id = principal.credential.clone().unwrap_or_default();
            let record = self.active_record(&id);
            return match record {
                Ok(record) if record.hash == *hash => {
                    let principal = principal_of(&record)?;
                    self.remember(token, &principal, record.hash);
                    Ok(principal)
                }
                Ok(_) | Err(_) => {
                    self.forget(token);
                    record.and_then(|record| self.check_secret(token, &record))
                }
            };
        }
        let (id, _) = parse(token)?;
        let record = self.active_record(id)?;
        self.check_secret(token, &record)
    }

    fn check_secret(&self, token: &str, record: &TokenRecord) -> Result<Principal, AuthError> {
        let (_, secret) = parse(token)?;
        let parsed = PasswordHash::new(&record.hash).map_err(|e| AuthError::Hash(e.to_string()))?;
        Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .map_err(|_| AuthError::WrongSecret)?;
        let principal = principal_of(record)?;
        self.remember(token, &principal, record.hash.clone());
        Ok(principal)
    }

    fn active_record(&self, id: &str) -> Result<TokenRecord, AuthError> {
        let record = self.store.token(id)?.ok_or(AuthError::UnknownToken)?;
        if record.revoked_at_us.is_some() {
            return Err(AuthError::Revoked);
        }
        if !record.is_active(now_micros()) {
            return Err(AuthError::Expired);
        }
        Ok(record)
    }

    fn remember(&self, token: &str, principal: &Principal, hash: String) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(
                token.to_string(),
                Cached {
                    principal: principal.clone(),
                    hash,
                    checked_at: Instant::now(),
                },
            );
        }
    }

    fn forget(&self, token: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(token);
        }
    }
}

/// The id and secret of a token.
fn parse(token: &str) -> Result<(&str, &str), AuthError> {
    let rest = token.strip_prefix(PREFIX).ok_or(AuthError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(AuthError::Malformed)?;
    let hex =
        |s: &str, bytes: usize| s.len() == bytes * 2 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(id, ID_BYTES) || !hex(secret, SECRET_BYTES) {
        return Err(AuthError::Malformed);
    }
    Ok((id, secret))
}

fn principal_of(record: &TokenRecord) -> Result<Principal, AuthError> {
    let role = record
        .role
        .parse::<Role>()
        .map_err(|e| AuthError::Invalid(format!("token {}: {e}", record.id)))?;
    Ok(Principal {
        tenant: Some(record.tenant.clone()),
        role,
        credential: Some(record.id.clone()),
    })
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_connectors::store::MemoryStore;

    fn book(revalidate: Duration) -> (Arc<MemoryStore>, TokenBook) {
        let store = Arc::new(MemoryStore::new());
        let dyn_store: Arc<dyn TaskStore> = store.clone();
        (store, TokenBook::new(dyn_store, revalidate))
    }

    #[test]
    fn a_minted_token_verifies_and_its_secret_is_not_stored() {
        let (store, book) = book(Duration::from_secs(60));
        let minted = book
            .mint("acme", Role::Submitter, "ci", None)
            .expect("mint");
        let principal = book.verify(&minted.token).expect("verify");
        assert_eq!(principal.tenant.as_deref(), Some("acme"));
        assert_eq!(principal.role, Role::Submitter);
        assert_eq!(
            principal.credential.as_deref(),
            Some(minted.record.id.as_str())
        );
        let secret = minted.token.rsplit('_').next().expect("secret");
        let stored = store.token(&minted.record.id).expect("read").expect("kept");
        assert!(!format!("{stored:?}").contains(secret));
        assert!(stored.hash.starts_with("$argon2id$"));
    }

    #[test]
    fn wrong_malformed_unknown_and_revoked_tokens_are_refused() {
        let (_, book) = book(Duration::ZERO);
        let minted = book.mint("acme", Role::Operator, "", None).expect("mint");
        let (id, secret) = parse(&minted.token).expect("parse");
        let flipped = format!(
            "tw_{id}_{}{}",
            if secret.starts_with('0') { '1' } else { '0' },
            &secret[1..]
        );
        assert!(matches!(book.verify(&flipped), Err(AuthError::WrongSecret)));
        assert!(matches!(book.verify("Bearer x"), Err(AuthError::Malformed)));
        let unknown = format!("tw_{}_{secret}", "0".repeat(16));
        assert!(matches!(
            book.verify(&unknown),
            Err(AuthError::UnknownToken)
        ));
        book.verify(&minted.token).expect("valid before revoking");
        book.revoke(id).expect("revoke").expect("known");
        assert!(matches!(
            book.verify(&minted.token),
            Err(AuthError::Revoked)
        ));
        assert!(book.revoke(&"f".repeat(16)).expect("revoke").is_none());
    }

    #[test]
    fn a_revocation_made_elsewhere_takes_effect_after_revalidation() {
        let (store, book) = book(Duration::from_millis(50));
        let minted = book.mint("acme", Role::Submitter, "", None).expect("mint");
        book.verify(&minted.token).expect("verify");
        // Another process sharing the store revokes it.
        let mut record = minted.record.clone();
        record.revoked_at_us = Some(now_micros());
        store.put_token(&record).expect("revoke elsewhere");
        std::thread::sleep(Duration::from_millis(80));
        assert!(matches!(
            book.verify(&minted.token),
            Err(AuthError::Revoked)
        ));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let (_, book) = book(Duration::ZERO);
        let minted = book
            .mint("acme", Role::Submitter, "", Some(now_micros() - 1))
            .expect("mint");
        assert!(matches!(
            book.verify(&minted.token),
            Err(AuthError::Expired)
        ));
    }
}
