//! Runs every SWF policy on one log and prints one JSON line per policy.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/data/swf/hpc2n.swf".to_string());
    let workload = tidewater_bench::swf::read_swf(std::path::Path::new(&path))?;
    for policy in tidewater_bench::swf::POLICIES {
        let report = tidewater_bench::swf::simulate(&workload, policy)?;
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
