//! Short, mostly inline strings used for identifiers and labels.

/// A short string stored inline up to 24 bytes, so that task kinds, tenants,
/// task ids and executor ids cost no heap allocation on the hot path.
pub type Name = compact_str::CompactString;
