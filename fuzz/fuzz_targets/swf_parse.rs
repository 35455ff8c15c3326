//! SWF parsing: any bytes through [`parse_swf`], the reader of the Standard
//! Workload Format logs that `tidewater replay --swf` simulates. It must
//! answer a workload or an error naming the line, never panic; an accepted
//! workload is sorted by submit time, each job runnable and within the
//! machine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewater_connectors::trace::swf::parse_swf;

fuzz_target!(|data: &[u8]| {
    let Ok(workload) = parse_swf(data, "fuzz") else {
        return;
    };
    assert!(!workload.jobs.is_empty());
    for pair in workload.jobs.windows(2) {
        assert!(pair[0].submit <= pair[1].submit, "jobs in submit order");
    }
    for job in &workload.jobs {
        assert!(job.run > 0.0 && job.run.is_finite() && job.requested > 0.0);
        assert!(job.procs >= 1 && job.procs <= workload.processors);
    }
});
