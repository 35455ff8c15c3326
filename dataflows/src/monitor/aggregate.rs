//! Exact aggregates of a group's values, shared by the dataflow and by
//! sequential recomputation in tests.
//!
//! Values travel as order-preserving `u64` encodings of `f64`, so that the
//! dataflow can sort and consolidate them exactly.

use super::Aggregate;

/// An `f64` encoded so that integer order is the float's total order.
pub fn encode(value: f64) -> u64 {
    let bits = value.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// The inverse of [`encode`].
pub fn decode(encoded: u64) -> f64 {
    if encoded >> 63 == 1 {
        f64::from_bits(encoded & !(1 << 63))
    } else {
        f64::from_bits(!encoded)
    }
}

/// The aggregates of a group given as `(value, multiplicity)` pairs sorted by
/// value, with every multiplicity positive. Empty groups have no result.
pub fn aggregate(values: &[(f64, i64)], aggregates: &[Aggregate]) -> Option<Vec<f64>> {
    let count: i64 = values.iter().map(|(_, n)| n).sum();
    if count <= 0 {
        return None;
    }
    let sum: f64 = values.iter().map(|(v, n)| v * *n as f64).sum();
    Some(
        aggregates
            .iter()
            .map(|aggregate| match aggregate {
                Aggregate::Count => count as f64,
                Aggregate::Sum => sum,
                Aggregate::Avg => sum / count as f64,
                Aggregate::Min => values[0].0,
                Aggregate::Max => values[values.len() - 1].0,
                Aggregate::Quantile(q) => {
                    let rank = ((q * count as f64).ceil() as i64).clamp(1, count);
                    let mut seen = 0;
                    values
                        .iter()
                        .find(|(_, n)| {
                            seen += n;
                            seen >= rank
                        })
                        .map_or(values[values.len() - 1].0, |(v, _)| *v)
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_preserves_order() {
        let values = [-1e9, -2.5, -0.0, 0.0, 1e-9, 3.0, 7e12];
        for pair in values.windows(2) {
            assert!(encode(pair[0]) <= encode(pair[1]), "{pair:?}");
            assert_eq!(decode(encode(pair[0])).to_bits(), pair[0].to_bits());
        }
    }

    #[test]
    fn aggregates_are_exact() {
        let values = [(1.0, 2), (2.0, 1), (10.0, 1)];
        let all = [
            Aggregate::Count,
            Aggregate::Sum,
            Aggregate::Avg,
            Aggregate::Min,
            Aggregate::Max,
            Aggregate::Quantile(0.5),
            Aggregate::Quantile(0.75),
            Aggregate::Quantile(1.0),
        ];
        assert_eq!(
            aggregate(&values, &all),
            Some(vec![4.0, 14.0, 3.5, 1.0, 10.0, 1.0, 2.0, 10.0])
        );
        assert_eq!(aggregate(&[], &all), None);
    }
}
