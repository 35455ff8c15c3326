//! Benchmarks and the trace replay harness.
//!
//! [`openb`] replays the Alibaba GPU cluster trace through the placement
//! policies to saturation; [`swf`] simulates a batch cluster from a Standard
//! Workload Format log under FCFS, user-estimate and learned ordering.
#![forbid(missing_docs)]

pub mod learner_bench;
pub mod openb;
pub mod sharded;
pub mod swf;
