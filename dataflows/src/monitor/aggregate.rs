//! Exact aggregates of a group's values, shared by the dataflow and by
//! sequential recomputation in tests.
//!
//! Values travel as order-preserving `u64` encodings of `f64`, so that the
//! dataflow can sort and consolidate them exactly. Sums are kept in fixed
//! point ([`to_fixed`]): adding and retracting values is then exact and
//! independent of order, which floating-point addition is not, so a
//! window's sum returns to exactly zero when its events leave it.

use super::Aggregate;

/// Scale of the fixed-point sums: 2^32 units per 1.0, so each value is
/// resolved to about 2.3e-10 and sums are exact up to about 4e28.
const FIXED_ONE: f64 = (1u64 << 32) as f64;

/// A group's count and fixed-point sum: the abelian part of its aggregates,
/// and a differential dataflow difference type as it stands (tuples of
/// abelian groups are abelian).
pub type Moments = (i64, i128);

/// `value` in fixed point (saturating beyond ±4e28; NaN counts as 0).
pub fn to_fixed(value: f64) -> i128 {
    let scaled = (value * FIXED_ONE).round();
    // Within ±2^63 the conversion through i64 is one instruction; i128's
    // is a library call.
    if scaled.abs() < 9.2e18 {
        i128::from(scaled as i64)
    } else {
        scaled as i128
    }
}

/// The inverse of [`to_fixed`], to the nearest `f64`.
pub fn from_fixed(sum: i128) -> f64 {
    sum as f64 / FIXED_ONE
}

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

/// How much of a group's values a query must keep, by what its aggregates
/// need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregatePlan {
    /// Count, sum and average: the group's [`Moments`] suffice.
    Moments,
    /// Also min and max, no quantiles: the moments plus each epoch's least
    /// and greatest value (a window's extreme is the extreme of its epochs'
    /// extremes).
    Extremes,
    /// Quantiles: every distinct value with its multiplicity.
    Values,
}

impl AggregatePlan {
    /// The plan for `aggregates`.
    pub fn of(aggregates: &[Aggregate]) -> Self {
        if aggregates
            .iter()
            .any(|a| matches!(a, Aggregate::Quantile(_)))
        {
            AggregatePlan::Values
        } else if aggregates
            .iter()
            .any(|a| matches!(a, Aggregate::Min | Aggregate::Max))
        {
            AggregatePlan::Extremes
        } else {
            AggregatePlan::Moments
        }
    }
}

/// The aggregates of a group given as `(value, multiplicity)` pairs sorted by
/// value, with every multiplicity positive. Empty groups have no result.
pub fn aggregate(values: &[(f64, i64)], aggregates: &[Aggregate]) -> Option<Vec<f64>> {
    let count: i64 = values.iter().map(|(_, n)| n).sum();
    let sum: i128 = values
        .iter()
        .map(|(v, n)| to_fixed(*v) * i128::from(*n))
        .sum();
    aggregate_sorted((count, sum), values.iter().copied(), aggregates)
}

/// The aggregates of a group from its moments and its values in ascending
/// order (`(value, multiplicity)`, multiplicities positive; only read when
/// an aggregate needs them). Empty groups have no result.
pub fn aggregate_sorted<I>(
    (count, sum): Moments,
    values: I,
    aggregates: &[Aggregate],
) -> Option<Vec<f64>>
where
    I: DoubleEndedIterator<Item = (f64, i64)> + Clone,
{
    if count <= 0 {
        return None;
    }
    let sum = from_fixed(sum);
    Some(
        aggregates
            .iter()
            .map(|aggregate| match aggregate {
                Aggregate::Count => count as f64,
                Aggregate::Sum => sum,
                Aggregate::Avg => sum / count as f64,
                Aggregate::Min => values.clone().next().map_or(f64::NAN, |(v, _)| v),
                Aggregate::Max => values.clone().next_back().map_or(f64::NAN, |(v, _)| v),
                Aggregate::Quantile(q) => {
                    let rank = ((q * count as f64).ceil() as i64).clamp(1, count);
                    let mut seen = 0;
                    let mut last = f64::NAN;
                    for (value, n) in values.clone() {
                        seen += n;
                        last = value;
                        if seen >= rank {
                            break;
                        }
                    }
                    last
                }
            })
            .collect(),
    )
}

/// The aggregates of a group known only by its moments (every aggregate
/// must be count, sum or average: [`AggregatePlan::Moments`]).
pub fn aggregate_moments(moments: Moments, aggregates: &[Aggregate]) -> Option<Vec<f64>> {
    aggregate_sorted(moments, std::iter::empty(), aggregates)
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

    #[test]
    fn fixed_point_sums_retract_exactly() {
        // In floating point, (0.1 + 0.2 + 1e16) - 1e16 - 0.2 is not 0.1.
        let values = [0.1, 0.2, 1e16, 3.3e-5];
        let mut sum: i128 = values.iter().map(|v| to_fixed(*v)).sum();
        for v in &values[1..] {
            sum -= to_fixed(*v);
        }
        assert_eq!(sum, to_fixed(0.1));
        assert!((from_fixed(sum) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn moments_alone_give_count_sum_and_average() {
        let aggregates = [Aggregate::Count, Aggregate::Sum, Aggregate::Avg];
        assert_eq!(AggregatePlan::of(&aggregates), AggregatePlan::Moments);
        assert_eq!(
            AggregatePlan::of(&[Aggregate::Count, Aggregate::Max]),
            AggregatePlan::Extremes
        );
        assert_eq!(
            AggregatePlan::of(&[Aggregate::Min, Aggregate::Quantile(0.5)]),
            AggregatePlan::Values
        );
        assert_eq!(
            aggregate_moments((4, to_fixed(14.0)), &aggregates),
            Some(vec![4.0, 14.0, 3.5])
        );
        assert_eq!(aggregate_moments((0, 0), &aggregates), None);
    }
}
