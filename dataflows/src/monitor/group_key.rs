//! Group ids: a 64-bit id for a query's group, computed from an event
//! without building the group's values.
//!
//! Each of an event's dimension values is hashed once ([`DimensionHashes`])
//! and shared by every query; a query's group id mixes the hashes of its
//! group-by dimensions. Ids stand in for groups inside the dataflow, so that
//! differential dataflow sorts and merges plain integers; a group's values
//! travel once per worker, when the worker first sees the group. Two
//! distinct groups of one query share an id with probability about
//! n²/2^65 for n groups (3 in 10^8 at a million groups).

use std::hash::Hasher;

use rustc_hash::FxHasher;

use tidewater_operators::model::{MetricEvent, Name};

use super::Dimension;

/// The number of dimensions.
const DIMENSIONS: usize = 6;

/// A dimension's slot in [`DimensionHashes`].
fn slot(dimension: Dimension) -> usize {
    match dimension {
        Dimension::Metric => 0,
        Dimension::Kind => 1,
        Dimension::Tenant => 2,
        Dimension::Executor => 3,
        Dimension::Status => 4,
        Dimension::Qos => 5,
    }
}

/// A set of dimensions: those some query groups by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DimensionSet(u8);

impl DimensionSet {
    /// Adds `dimensions`.
    pub fn with(self, dimensions: &[Dimension]) -> Self {
        DimensionSet(
            dimensions
                .iter()
                .fold(self.0, |set, d| set | (1 << slot(*d))),
        )
    }

    fn contains(self, dimension: Dimension) -> bool {
        self.0 & (1 << slot(dimension)) != 0
    }
}

/// The hash of each of an event's dimension values (those of a
/// [`DimensionSet`]; the others are left zero).
pub struct DimensionHashes([u64; DIMENSIONS]);

impl DimensionHashes {
    /// Hashes the dimensions of `event` in `used`. Metric and QoS are small
    /// enumerations, mixed from their discriminants; the others are strings.
    pub fn of(event: &MetricEvent, used: DimensionSet) -> Self {
        let mut hashes = [0; DIMENSIONS];
        let string = |value: &Name| {
            let mut hasher = FxHasher::default();
            hasher.write(value.as_bytes());
            hasher.finish()
        };
        if used.contains(Dimension::Metric) {
            hashes[0] = finalize(0x6d65_7472_6963 ^ event.kind as u64);
        }
        if used.contains(Dimension::Kind) {
            hashes[1] = string(&event.task_kind);
        }
        if used.contains(Dimension::Tenant) {
            hashes[2] = string(&event.tenant);
        }
        if used.contains(Dimension::Executor) {
            hashes[3] = string(&event.executor);
        }
        if used.contains(Dimension::Status) {
            hashes[4] = string(&event.status);
        }
        if used.contains(Dimension::Qos) {
            hashes[5] = finalize(0x0071_6f73 ^ event.qos as u64);
        }
        DimensionHashes(hashes)
    }

    /// The id of the group `event` (whose hashes these are, including every
    /// one of `dimensions`) falls in when grouped by `dimensions`.
    pub fn group_id(&self, dimensions: &[Dimension]) -> u64 {
        let mut mixed = 0x243f_6a88_85a3_08d3_u64 ^ dimensions.len() as u64;
        for dimension in dimensions {
            mixed = finalize(mixed ^ self.0[slot(*dimension)]);
        }
        finalize(mixed)
    }
}

/// A group's values, in the order of its query's group-by dimensions.
pub fn group_values(dimensions: &[Dimension], event: &MetricEvent) -> Vec<Name> {
    dimensions.iter().map(|d| d.of(event)).collect()
}

/// A full-avalanche 64-bit mixer (the finalizer of MurmurHash3), so that
/// every bit of every dimension's hash affects every bit of the id.
fn finalize(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_operators::model::{MetricKind, QosClass};

    fn event(kind: &str, tenant: &str) -> MetricEvent {
        MetricEvent {
            kind: MetricKind::Completed,
            task_kind: Name::from(kind),
            tenant: Name::from(tenant),
            executor: Name::from("e0"),
            status: Name::from("succeeded"),
            qos: QosClass::Burstable,
            value: 1.0,
            at_ms: 0,
        }
    }

    #[test]
    fn ids_depend_on_the_grouped_values_and_their_order() {
        let by = [Dimension::Kind, Dimension::Tenant];
        let id = |e: &MetricEvent, d: &[Dimension]| {
            DimensionHashes::of(e, DimensionSet::default().with(d)).group_id(d)
        };
        let a = event("noop", "acme");
        assert_eq!(id(&a, &by), id(&event("noop", "acme"), &by));
        assert_ne!(id(&a, &by), id(&event("noop", "globex"), &by));
        // Swapped values are a different group.
        assert_ne!(id(&a, &by), id(&event("acme", "noop"), &by));
        // Dimensions not grouped by do not matter.
        assert_eq!(
            id(&a, &[Dimension::Kind]),
            id(&event("noop", "globex"), &[Dimension::Kind])
        );
        assert_ne!(id(&a, &[]), id(&a, &[Dimension::Kind]));
    }

    #[test]
    fn ids_of_many_groups_are_distinct() {
        let by = [Dimension::Kind, Dimension::Tenant];
        let mut ids = std::collections::HashSet::new();
        for k in 0..300 {
            for t in 0..300 {
                let e = event(&format!("kind-{k}"), &format!("tenant-{t}"));
                let used = DimensionSet::default().with(&by);
                assert!(ids.insert(DimensionHashes::of(&e, used).group_id(&by)));
            }
        }
    }
}
