//! openb trace parsing: any bytes through [`parse_nodes`] and
//! [`parse_pods`], the readers of the GPU cluster trace that
//! `tidewater replay` places. Each must answer its records or an error
//! naming the line, never panic; accepted nodes have a bounded GPU count
//! and accepted pods a request the allocator can take (some CPU, a share
//! only of one GPU, GPU models only where a GPU is asked for).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewater_connectors::trace::openb::{parse_nodes, parse_pods, MAX_GPUS_PER_NODE};
use tidewater_operators::model::GpuRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(nodes) = parse_nodes(data, "fuzz") {
        assert!(nodes
            .iter()
            .all(|n| n.gpus.len() <= usize::from(MAX_GPUS_PER_NODE)));
    }
    if let Ok(pods) = parse_pods(data, "fuzz") {
        for pod in pods {
            assert!(pod.cpu_milli >= 1);
            match pod.gpu {
                GpuRequest::None => assert!(pod.gpu_models.is_empty()),
                GpuRequest::Fraction(m) => assert!(m > 0 && m < 1000),
                GpuRequest::Whole(_) => {}
            }
        }
    }
});
