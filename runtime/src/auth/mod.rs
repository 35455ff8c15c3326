//! Who may call the HTTP API, and as whom.
//!
//! Every request but the public ones (`/healthz`, the dashboard's static
//! files) carries `Authorization: Bearer <credential>`. The
//! [`Authenticator`] turns the credential into a [`Principal`] (a tenant and
//! a [`Role`]): an API token minted by `tidewater token create` and kept
//! hashed in the store ([`api_token`]), or a JWT signed with a configured
//! key ([`jwt`]). The [`policy`] says which roles may take each action; the
//! handlers then scope what a `submitter` sees to its own tenant. Every
//! authenticated call that changes something is written to the
//! [`audit`] log.
//!
//! ```text
//!  request ─► policy::action_of(method, path) ─public─► handler
//!                 │ protected
//!                 ▼
//!  Authorization ─► Authenticator (token: store + argon2, cached │ jwt: key)
//!                 │ Principal{tenant, role}        401 when missing or wrong
//!                 ▼
//!  policy: role allowed for the action? ──no──► 403
//!                 │ yes
//!                 ▼
//!  handler (tenant scoping) ─► response ─► audit log (mutating calls)
//! ```
//!
//! `auth.mode = "none"` turns all of this off, and is refused unless the
//! API listens on loopback only.

pub mod api_token;
pub mod audit;
pub mod authenticator;
pub mod config;
pub mod jwt;
pub mod policy;
pub mod principal;

pub use api_token::{MintedToken, TokenBook};
pub use audit::{AuditEntry, AuditLog};
pub use authenticator::{AuthError, Authenticator};
pub use config::{AuthConfig, AuthMode, JwtConfig};
pub use policy::Action;
pub use principal::{Principal, Role};
