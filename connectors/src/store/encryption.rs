//! Encryption at rest of the values a store keeps: task payloads, results
//! and dead letters.
//!
//! ```text
//!  store.encryption (config) ──► KeyRing::load ──► ValueCodec
//!                                                     │
//!   record JSON ──seal(aad)──► envelope (key id, nonce, AES-256-GCM ciphertext) ──► store
//!   store ──► envelope ──open(aad)──► record JSON     (plain JSON passes through)
//! ```
//!
//! Each key is 32 bytes, written as 64 hex digits in a file or an
//! environment variable, and named by a key id. One key is active: every
//! value written is sealed with it under a fresh random 96-bit nonce, and
//! the key id is stored beside the ciphertext, so a value written under a
//! key that is no longer active still opens as long as that key stays in
//! the ring: keys rotate by adding a new key, making it active and keeping
//! the old one for reading. The associated data binds a ciphertext to the
//! record it belongs to (for example the task id), so sealed values cannot
//! be swapped between records unnoticed.
//!
//! Values written before encryption was turned on are plain JSON; they are
//! still read (and sealed when next written). Index fields (task id, state,
//! tenant, kind, times) stay in plain text so that listings and counts keep
//! working; only the bodies are sealed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// First bytes of a sealed value; no JSON text starts with a NUL byte, so
/// sealed and plain values are told apart.
const MAGIC: &[u8] = b"\0TWENC1";
/// AES-GCM's nonce length, in bytes.
const NONCE_LEN: usize = 12;
/// Length of a key, in bytes (AES-256).
const KEY_LEN: usize = 32;

/// Where a key's 64 hex digits are read from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySource {
    /// A file holding the key (surrounding whitespace is ignored).
    File(PathBuf),
    /// An environment variable holding the key.
    Env(String),
}

/// The `store.encryption` settings: the keys by id, and which one seals
/// new values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// The id of the key new values are sealed with.
    pub active: String,
    /// Every key that may have sealed a stored value, by id.
    pub keys: BTreeMap<String, KeySource>,
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The active key id names no key.
    #[error("store.encryption.active = {active:?} names none of the keys ({known})")]
    UnknownActive {
        /// The active id.
        active: String,
        /// The ids configured.
        known: String,
    },
    /// A key id is empty or too long to store beside a value.
    #[error("store.encryption key id {0:?} must be 1 to 255 bytes")]
    BadId(String),
    /// A key file could not be read.
    #[error("reading key {id:?} from {path}: {detail}")]
    File {
        /// The key id.
        id: String,
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// A key's environment variable is not set.
    #[error("key {id:?}: environment variable {var} is not set")]
    MissingEnv {
        /// The key id.
        id: String,
        /// The variable.
        var: String,
    },
    /// A key is not 64 hex digits.
    #[error("key {id:?} must be 64 hex digits (32 bytes), such as `openssl rand -hex 32` prints")]
    Malformed {
        /// The key id.
        id: String,
    },
}

/// The keys a store seals and opens values with.
pub struct KeyRing {
    active: String,
    ciphers: BTreeMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("ids", &self.ciphers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    /// Reads every key `config` names.
    pub fn load(config: &EncryptionConfig) -> Result<KeyRing, KeyError> {
        let mut keys = BTreeMap::new();
        for (id, source) in &config.keys {
            let text = match source {
                KeySource::File(path) => {
                    std::fs::read_to_string(path).map_err(|e| KeyError::File {
                        id: id.clone(),
                        path: path.display().to_string(),
                        detail: e.to_string(),
                    })?
                }
                KeySource::Env(var) => std::env::var(var).map_err(|_| KeyError::MissingEnv {
                    id: id.clone(),
                    var: var.clone(),
                })?,
            };
            let key =
                parse_hex_key(text.trim()).ok_or_else(|| KeyError::Malformed { id: id.clone() })?;
            keys.insert(id.clone(), key);
        }
        KeyRing::from_keys(&config.active, keys)
    }

    /// A ring of raw keys by id, sealing with `active`.
    pub fn from_keys(
        active: &str,
        keys: BTreeMap<String, [u8; KEY_LEN]>,
    ) -> Result<KeyRing, KeyError> {
        if !keys.contains_key(active) {
            return Err(KeyError::UnknownActive {
                active: active.to_string(),
                known: keys.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        let mut ciphers = BTreeMap::new();
        for (id, key) in keys {
            if id.is_empty() || id.len() > usize::from(u8::MAX) {
                return Err(KeyError::BadId(id));
            }
            ciphers.insert(id, Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)));
        }
        Ok(KeyRing {
            active: active.to_string(),
            ciphers,
        })
    }

    /// The id of the key new values are sealed with.
    pub fn active(&self) -> &str {
        &self.active
    }

    /// `plaintext` sealed with the active key, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, StoreError> {
        let cipher = self.cipher(&self.active)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| StoreError::Encode {
                what: "sealed value",
                detail: "encryption failed".into(),
            })?;
        Ok(Sealed {
            key_id: self.active.clone(),
            nonce: nonce.into(),
            ciphertext,
        })
    }

    /// The plaintext of `sealed`, which must have been sealed with `aad`.
    pub fn open(&self, aad: &[u8], sealed: &Sealed, key: &str) -> Result<Vec<u8>, StoreError> {
        let cipher = self.cipher(&sealed.key_id)?;
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map_err(|_| StoreError::Decrypt {
                key: key.to_string(),
                key_id: sealed.key_id.clone(),
            })
    }

    fn cipher(&self, id: &str) -> Result<&Aes256Gcm, StoreError> {
        self.ciphers.get(id).ok_or_else(|| StoreError::MissingKey {
            key_id: id.to_string(),
        })
    }
}

/// 32 bytes from 64 hex digits.
fn parse_hex_key(text: &str) -> Option<[u8; KEY_LEN]> {
    if text.len() != KEY_LEN * 2 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(key)
}

/// A sealed value: the id of the key that sealed it, the nonce and the
/// ciphertext (with its authentication tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// The key's id.
    pub key_id: String,
    /// The nonce it was sealed under.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

impl Sealed {
    /// The envelope as bytes: magic, key id length and key id, nonce,
    /// ciphertext.
    pub fn to_bytes(&self) -> Vec<u8> {
        let id = self.key_id.as_bytes();
        let mut out =
            Vec::with_capacity(MAGIC.len() + 1 + id.len() + NONCE_LEN + self.ciphertext.len());
        out.extend_from_slice(MAGIC);
        // Ids are at most 255 bytes (checked when the ring is made).
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(id);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Whether `bytes` is an envelope (rather than a plain value).
    pub fn is_envelope(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC)
    }

    /// The envelope in `bytes`; `key` names the entry for the error.
    pub fn from_bytes(bytes: &[u8], key: &str) -> Result<Sealed, StoreError> {
        let corrupt = |detail: &str| StoreError::Corrupt {
            key: key.to_string(),
            detail: format!("sealed value: {detail}"),
        };
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| corrupt("no envelope"))?;
        let (&id_len, rest) = rest.split_first().ok_or_else(|| corrupt("truncated"))?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN {
            return Err(corrupt("truncated"));
        }
        let (id, rest) = rest.split_at(id_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let key_id = std::str::from_utf8(id).map_err(|_| corrupt("key id is not UTF-8"))?;
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(nonce);
        Ok(Sealed {
            key_id: key_id.to_string(),
            nonce: nonce_bytes,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

/// How a store turns value bytes into what it writes, and back: sealed
/// when a [`KeyRing`] is set, as they are otherwise. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ValueCodec {
    keys: Option<Arc<KeyRing>>,
}

impl ValueCodec {
    /// A codec that seals with `keys` (`None`: values stay plain).
    pub fn new(keys: Option<Arc<KeyRing>>) -> Self {
        ValueCodec { keys }
    }

    /// The ring, when values are sealed.
    pub fn keys(&self) -> Option<&KeyRing> {
        self.keys.as_deref()
    }

    /// `plain` as written: an envelope bound to `aad` when sealing.
    pub fn seal(&self, aad: &[u8], plain: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        match &self.keys {
            None => Ok(plain),
            Some(keys) => Ok(keys.seal(aad, &plain)?.to_bytes()),
        }
    }

    /// The plain bytes of a stored value (an envelope or a plain value);
    /// `key` names the entry in errors.
    pub fn open<'a>(
        &self,
        aad: &[u8],
        stored: &'a [u8],
        key: &str,
    ) -> Result<Cow<'a, [u8]>, StoreError> {
        if !Sealed::is_envelope(stored) {
            return Ok(Cow::Borrowed(stored));
        }
        let sealed = Sealed::from_bytes(stored, key)?;
        self.open_sealed(aad, &sealed, key).map(Cow::Owned)
    }

    /// The plaintext of `sealed`.
    pub fn open_sealed(
        &self,
        aad: &[u8],
        sealed: &Sealed,
        key: &str,
    ) -> Result<Vec<u8>, StoreError> {
        match &self.keys {
            Some(keys) => keys.open(aad, sealed, key),
            None => Err(StoreError::MissingKey {
                key_id: sealed.key_id.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(active: &str, ids: &[(&str, u8)]) -> KeyRing {
        let keys = ids
            .iter()
            .map(|(id, fill)| (id.to_string(), [*fill; KEY_LEN]))
            .collect();
        KeyRing::from_keys(active, keys).expect("ring")
    }

    #[test]
    fn values_round_trip_and_hide_their_plaintext() {
        let codec = ValueCodec::new(Some(Arc::new(ring("a", &[("a", 1)]))));
        let plain = b"{\"payload\":\"MARKER-1234\"}".to_vec();
        let stored = codec.seal(b"task:t1", plain.clone()).expect("seal");
        assert!(Sealed::is_envelope(&stored));
        assert!(!stored.windows(11).any(|w| w == b"MARKER-1234"));
        assert_eq!(
            codec
                .open(b"task:t1", &stored, "t1")
                .expect("open")
                .as_ref(),
            plain.as_slice()
        );
        // Bound to its record: another id does not open it.
        assert!(matches!(
            codec.open(b"task:t2", &stored, "t2"),
            Err(StoreError::Decrypt { .. })
        ));
    }

    #[test]
    fn plain_values_pass_through() {
        let codec = ValueCodec::new(Some(Arc::new(ring("a", &[("a", 1)]))));
        assert_eq!(codec.open(b"x", b"{}", "k").expect("open").as_ref(), b"{}");
    }

    #[test]
    fn wrong_missing_and_truncated_keys_are_typed_errors() {
        let a = ValueCodec::new(Some(Arc::new(ring("a", &[("a", 1)]))));
        let stored = a.seal(b"x", b"secret".to_vec()).expect("seal");
        // Same id, other key bytes: authentication fails.
        let impostor = ValueCodec::new(Some(Arc::new(ring("a", &[("a", 2)]))));
        assert!(matches!(
            impostor.open(b"x", &stored, "k"),
            Err(StoreError::Decrypt { .. })
        ));
        // The key id is unknown.
        let other = ValueCodec::new(Some(Arc::new(ring("b", &[("b", 1)]))));
        assert!(matches!(
            other.open(b"x", &stored, "k"),
            Err(StoreError::MissingKey { .. })
        ));
        // No keys at all.
        assert!(matches!(
            ValueCodec::default().open(b"x", &stored, "k"),
            Err(StoreError::MissingKey { .. })
        ));
        // Every truncation is an error, never a panic.
        for len in MAGIC.len()..stored.len() {
            assert!(a.open(b"x", &stored[..len], "k").is_err());
        }
    }

    #[test]
    fn keys_load_from_files_and_the_environment() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("k1.key");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).expect("write");
        let var = "TIDEWATER_TEST_ENCRYPTION_KEY_UNIT";
        std::env::set_var(var, "CD".repeat(32));
        let config = EncryptionConfig {
            active: "k2".into(),
            keys: [
                ("k1".to_string(), KeySource::File(path)),
                ("k2".to_string(), KeySource::Env(var.into())),
            ]
            .into_iter()
            .collect(),
        };
        let ring = KeyRing::load(&config).expect("load");
        assert_eq!(ring.active(), "k2");
        let bad = EncryptionConfig {
            active: "k9".into(),
            ..config.clone()
        };
        assert!(matches!(
            KeyRing::load(&bad),
            Err(KeyError::UnknownActive { .. })
        ));
        let unset = EncryptionConfig {
            active: "k".into(),
            keys: [(
                "k".to_string(),
                KeySource::Env("TIDEWATER_TEST_UNSET_KEY_VAR".into()),
            )]
            .into_iter()
            .collect(),
        };
        assert!(matches!(
            KeyRing::load(&unset),
            Err(KeyError::MissingEnv { .. })
        ));
        std::env::set_var(var, "not hex");
        assert!(matches!(
            KeyRing::load(&config),
            Err(KeyError::Malformed { .. })
        ));
    }
}
