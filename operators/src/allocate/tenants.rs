//! Tenants: per-tenant quotas on concurrent resources and weighted fair
//! share under contention.
//!
//! A shard's [`TenantBook`] counts what each tenant holds on the shard's
//! executors. The queue asks it for each tenant's *dominant share* (the
//! largest of its CPU, memory and GPU shares of the shard, divided by the
//! tenant's weight, as in dominant resource fairness) and serves the tenant
//! with the smallest first among equally ranked tasks. Quotas are enforced
//! by the tenant's home shard, which sees every placement of that tenant
//! (see [`super::ShardAllocator`]).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use serde::{Deserialize, Serialize};

use crate::model::{Name, ResourceRequest};

/// Upper bounds on what a tenant holds at once, over the whole cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceQuota {
    /// CPU, thousandths of a core; `None` for no bound.
    pub cpu_milli: Option<u64>,
    /// Memory, MiB.
    pub memory_mib: Option<u64>,
    /// GPU, thousandths of a device (whole devices count 1000 each).
    pub gpu_milli: Option<u64>,
}

impl ResourceQuota {
    /// Whether `held` plus `req` stays within the quota.
    pub fn admits(&self, held: &Usage, req: &ResourceRequest) -> bool {
        let within =
            |bound: Option<u64>, held: u64, more: u64| bound.is_none_or(|b| held + more <= b);
        within(self.cpu_milli, held.cpu_milli, u64::from(req.cpu_milli))
            && within(self.memory_mib, held.memory_mib, u64::from(req.memory_mib))
            && within(self.gpu_milli, held.gpu_milli, u64::from(req.gpu.milli()))
    }

    /// Which bound `req` alone exceeds, if any: such a task can never run.
    pub fn exceeded_by(&self, req: &ResourceRequest) -> Option<String> {
        let over = |name: &str, bound: Option<u64>, want: u64| {
            bound
                .filter(|b| want > *b)
                .map(|b| format!("{name} {want} exceeds the tenant's quota of {b}"))
        };
        over("cpu_milli", self.cpu_milli, u64::from(req.cpu_milli))
            .or_else(|| over("memory_mib", self.memory_mib, u64::from(req.memory_mib)))
            .or_else(|| over("gpu_milli", self.gpu_milli, u64::from(req.gpu.milli())))
    }
}

/// One tenant's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// Relative weight for fair share (a tenant of weight 2 is entitled to
    /// twice the dominant share of a tenant of weight 1).
    pub weight: f64,
    /// Bounds on what the tenant holds at once.
    pub quota: Option<ResourceQuota>,
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            weight: 1.0,
            quota: None,
        }
    }
}

/// Resources held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU, thousandths of a core.
    pub cpu_milli: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// GPU, thousandths of a device.
    pub gpu_milli: u64,
}

impl Usage {
    fn add(&mut self, req: &ResourceRequest) {
        self.cpu_milli += u64::from(req.cpu_milli);
        self.memory_mib += u64::from(req.memory_mib);
        self.gpu_milli += u64::from(req.gpu.milli());
    }

    fn sub(&mut self, req: &ResourceRequest) {
        self.cpu_milli = self.cpu_milli.saturating_sub(u64::from(req.cpu_milli));
        self.memory_mib = self.memory_mib.saturating_sub(u64::from(req.memory_mib));
        self.gpu_milli = self.gpu_milli.saturating_sub(u64::from(req.gpu.milli()));
    }

    /// Whether nothing is held.
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// Per-tenant usage on one shard, and quota usage for the tenants this shard
/// is home to.
#[derive(Clone, Debug, Default)]
pub struct TenantBook {
    configs: BTreeMap<Name, TenantConfig>,
    /// What each tenant holds on this shard's executors.
    held: HashMap<Name, Usage>,
    /// What each quota-bound tenant homed here holds anywhere.
    quota_held: HashMap<Name, Usage>,
    capacity: Usage,
}

impl TenantBook {
    /// A book for tenants configured as `configs` on a shard of `capacity`.
    pub fn new(configs: BTreeMap<Name, TenantConfig>, capacity: Usage) -> Self {
        TenantBook {
            configs,
            capacity,
            ..Default::default()
        }
    }

    /// Grows or shrinks the shard's capacity (executors joining, leaving).
    pub fn set_capacity(&mut self, capacity: Usage) {
        self.capacity = capacity;
    }

    /// The tenant's quota, if it has one.
    pub fn quota(&self, tenant: &str) -> Option<&ResourceQuota> {
        self.configs.get(tenant).and_then(|c| c.quota.as_ref())
    }

    /// Whether any tenant has a quota.
    pub fn has_quotas(&self) -> bool {
        self.configs.values().any(|c| c.quota.is_some())
    }

    /// Counts a placement on this shard.
    pub fn placed(&mut self, tenant: &Name, req: &ResourceRequest) {
        match self.held.get_mut(tenant) {
            Some(usage) => usage.add(req),
            None => self.held.entry(tenant.clone()).or_default().add(req),
        }
    }

    /// Counts a release on this shard.
    pub fn released(&mut self, tenant: &Name, req: &ResourceRequest) {
        if let Some(usage) = self.held.get_mut(tenant) {
            usage.sub(req);
        }
    }

    /// Whether the quota of `tenant` (homed here) admits `req` now.
    pub fn quota_admits(&self, tenant: &str, req: &ResourceRequest) -> bool {
        match self.quota(tenant) {
            None => true,
            Some(quota) => quota.admits(
                self.quota_held.get(tenant).unwrap_or(&Usage::default()),
                req,
            ),
        }
    }

    /// Counts `req` against the quota of `tenant` (homed here).
    pub fn quota_take(&mut self, tenant: &Name, req: &ResourceRequest) {
        if self.quota(tenant).is_some() {
            self.quota_held.entry(tenant.clone()).or_default().add(req);
        }
    }

    /// Returns `req` to the quota of `tenant` (homed here).
    pub fn quota_give_back(&mut self, tenant: &Name, req: &ResourceRequest) {
        if let Some(usage) = self.quota_held.get_mut(tenant) {
            usage.sub(req);
        }
    }

    /// What `tenant` holds against its quota (zero when homed elsewhere).
    pub fn quota_usage(&self, tenant: &str) -> Usage {
        self.quota_held.get(tenant).copied().unwrap_or_default()
    }

    /// What `tenant` holds on this shard.
    pub fn usage(&self, tenant: &str) -> Usage {
        self.held.get(tenant).copied().unwrap_or_default()
    }

    /// The tenant's dominant share of this shard divided by its weight: the
    /// smaller, the sooner it is served.
    pub fn weighted_share(&self, tenant: &str) -> f64 {
        let Some(usage) = self.held.get(tenant) else {
            return 0.0;
        };
        let share = |held: u64, cap: u64| {
            if cap == 0 {
                0.0
            } else {
                held as f64 / cap as f64
            }
        };
        let dominant = share(usage.cpu_milli, self.capacity.cpu_milli)
            .max(share(usage.memory_mib, self.capacity.memory_mib))
            .max(share(usage.gpu_milli, self.capacity.gpu_milli));
        let weight = self.configs.get(tenant).map_or(1.0, |c| c.weight);
        dominant / weight.max(f64::MIN_POSITIVE)
    }
}
