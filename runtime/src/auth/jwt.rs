//! JSON Web Tokens verified against a configured key (`auth.mode = "jwt"`).
//!
//! The token's signature, `exp` (required), `nbf`, and `iss`/`aud` when
//! configured are checked by jsonwebtoken; the tenant and role come from
//! the claims named by `auth.jwt.tenant_claim` and `role_claim`, and the
//! subject (`sub`) is what the audit log names.

use std::str::FromStr;

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::authenticator::AuthError;
use super::config::JwtConfig;
use super::principal::{Principal, Role};

/// Verifies JWTs with one key.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    tenant_claim: String,
    role_claim: String,
}

impl JwtVerifier {
    /// A verifier for `config` (reads its key file).
    pub fn new(config: &JwtConfig) -> Result<Self, AuthError> {
        let path = config.key_file.display().to_string();
        let key_error = |detail: String| AuthError::Key {
            path: path.clone(),
            detail,
        };
        let algorithm = Algorithm::from_str(&config.algorithm)
            .map_err(|_| key_error(format!("unknown algorithm {:?}", config.algorithm)))?;
        let bytes = std::fs::read(&config.key_file).map_err(|e| key_error(e.to_string()))?;
        let key = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                if secret.len() < 32 {
                    return Err(key_error("an HMAC secret needs at least 32 bytes".into()));
                }
                Ok(DecodingKey::from_secret(secret))
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(&bytes),
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&bytes),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&bytes),
        }
        .map_err(|e| key_error(e.to_string()))?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway_s;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(JwtVerifier {
            key,
            validation,
            tenant_claim: config.tenant_claim.clone(),
            role_claim: config.role_claim.clone(),
        })
    }

    /// The caller `token` speaks for.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Jwt(e.to_string()))?
            .claims;
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| AuthError::Jwt(format!("claim {name:?} missing or not a string")))
        };
        let tenant = text(&self.tenant_claim)?.to_string();
        let role = text(&self.role_claim)?
            .parse::<Role>()
            .map_err(|e| AuthError::Jwt(e.to_string()))?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .map(|s| format!("jwt:{s}"));
        Ok(Principal {
            tenant: Some(tenant),
            role,
            credential: subject,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier(dir: &std::path::Path) -> JwtVerifier {
        let key_file = dir.join("jwt.key");
        std::fs::write(&key_file, SECRET).expect("key");
        JwtVerifier::new(&JwtConfig {
            algorithm: "HS256".into(),
            key_file,
            issuer: Some("idp".into()),
            audience: None,
            tenant_claim: "tenant".into(),
            role_claim: "role".into(),
            leeway_s: 0,
        })
        .expect("verifier")
    }

    fn token(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("encode")
    }

    fn in_an_hour() -> u64 {
        tidewater_operators::model::now_micros() / 1_000_000 + 3_600
    }

    #[test]
    fn a_signed_token_gives_its_tenant_and_role() {
        let dir = tempfile::tempdir().expect("tempdir");
        let verifier = verifier(dir.path());
        let jwt = token(
            serde_json::json!({"sub": "alice", "tenant": "acme", "role": "operator", "iss": "idp", "exp": in_an_hour()}),
            SECRET,
        );
        let principal = verifier.verify(&jwt).expect("verify");
        assert_eq!(principal.tenant.as_deref(), Some("acme"));
        assert_eq!(principal.role, Role::Operator);
        assert_eq!(principal.credential.as_deref(), Some("jwt:alice"));
    }

    #[test]
    fn bad_signature_issuer_expiry_and_claims_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let verifier = verifier(dir.path());
        let good = serde_json::json!({"tenant": "acme", "role": "submitter", "iss": "idp", "exp": in_an_hour()});
        let cases = [
            token(good.clone(), b"another-secret-another-secret-xx"),
            token(
                serde_json::json!({"tenant": "acme", "role": "submitter", "iss": "other", "exp": in_an_hour()}),
                SECRET,
            ),
            token(
                serde_json::json!({"tenant": "acme", "role": "submitter", "iss": "idp", "exp": 1_000}),
                SECRET,
            ),
            token(
                serde_json::json!({"tenant": "acme", "role": "root", "iss": "idp", "exp": in_an_hour()}),
                SECRET,
            ),
            token(
                serde_json::json!({"role": "submitter", "iss": "idp", "exp": in_an_hour()}),
                SECRET,
            ),
            token(
                serde_json::json!({"tenant": "acme", "role": "submitter", "iss": "idp"}),
                SECRET,
            ),
            "not.a.jwt".to_string(),
        ];
        for (i, jwt) in cases.iter().enumerate() {
            assert!(
                matches!(verifier.verify(jwt), Err(AuthError::Jwt(_))),
                "case {i}"
            );
        }
        verifier
            .verify(&token(good, SECRET))
            .expect("the good one verifies");
    }
}
