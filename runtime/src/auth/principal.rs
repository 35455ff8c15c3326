//! Who a caller is once authenticated: a tenant and a role.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submit, read and cancel its own tenant's tasks, and hold
    /// reservations for its tenant.
    Submitter,
    /// A remote executor: join, heartbeat, leave, claim work and report
    /// outcomes, nothing else.
    Agent,
    /// Everything a submitter may, for every tenant, plus executors,
    /// reservations, statistics, queries, alerts and lineage.
    Operator,
    /// Everything, plus minting and revoking tokens.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Submitter, Role::Agent, Role::Operator, Role::Admin];

    /// The role's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Agent => "agent",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role acts across tenants.
    pub fn spans_tenants(self) -> bool {
        matches!(self, Role::Operator | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role word that names no role.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (roles: submitter, agent, operator, admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == word)
            .ok_or_else(|| UnknownRole(word.to_string()))
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The tenant it acts for; `None` only when authentication is off.
    pub tenant: Option<String>,
    /// What it may do.
    pub role: Role,
    /// The API token's id, or the JWT's subject: what the audit log names.
    pub credential: Option<String>,
}

impl Principal {
    /// The caller when authentication is off: anyone, allowed everything,
    /// with the tenant its requests name.
    pub fn anonymous() -> Self {
        Principal {
            tenant: None,
            role: Role::Admin,
            credential: None,
        }
    }

    /// Whether this caller may see and act on `tenant`'s tasks.
    pub fn may_act_for(&self, tenant: &str) -> bool {
        self.role.spans_tenants() || self.tenant.as_deref().is_none_or(|own| own == tenant)
    }

    /// The tenant this caller is confined to, if any (a submitter's or an
    /// agent's own).
    pub fn confined_tenant(&self) -> Option<&str> {
        if self.role.spans_tenants() {
            None
        } else {
            self.tenant.as_deref()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_words_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn submitters_are_confined_to_their_tenant() {
        let submitter = Principal {
            tenant: Some("a".into()),
            role: Role::Submitter,
            credential: Some("t1".into()),
        };
        assert!(submitter.may_act_for("a"));
        assert!(!submitter.may_act_for("b"));
        assert_eq!(submitter.confined_tenant(), Some("a"));
        let operator = Principal {
            role: Role::Operator,
            ..submitter
        };
        assert!(operator.may_act_for("b"));
        assert_eq!(operator.confined_tenant(), None);
        assert!(Principal::anonymous().may_act_for("anyone"));
    }
}
