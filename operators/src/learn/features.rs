//! Feature hashing: categorical and numeric features into a sparse vector.

/// A sparse feature vector: (index, value) pairs.
pub type SparseFeatures = Vec<(u32, f32)>;

/// Hashes named features into a fixed number of dimensions. Index 0 is the
/// bias; categorical values hash to one dimension with value 1; numeric
/// features take a dimension by name.
#[derive(Clone, Copy, Debug)]
pub struct FeatureHasher {
    dim: u32,
}

impl FeatureHasher {
    /// A hasher into `dim` dimensions (at least 2).
    pub fn new(dim: u32) -> Self {
        FeatureHasher { dim: dim.max(2) }
    }

    /// Dimensions.
    pub fn dim(&self) -> u32 {
        self.dim
    }

    fn index(&self, name: &str, value: &str) -> u32 {
        // FNV-1a: stable across runs and platforms.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes().chain([0xff]).chain(value.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        1 + (h % u64::from(self.dim - 1)) as u32
    }

    /// Starts a vector with the bias term.
    pub fn start(&self) -> SparseFeatures {
        vec![(0, 1.0)]
    }

    /// Adds a categorical feature `name = value`.
    pub fn categorical(&self, features: &mut SparseFeatures, name: &str, value: &str) {
        features.push((self.index(name, value), 1.0));
    }

    /// Adds a numeric feature.
    pub fn numeric(&self, features: &mut SparseFeatures, name: &str, value: f32) {
        features.push((self.index(name, ""), value));
    }
}
