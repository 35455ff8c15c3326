//! The openb GPU cluster trace (Alibaba, ATC '23): a CSV node list (name,
//! CPU milli-cores, memory, GPU count and model) and a CSV pod list (CPU,
//! memory, whole GPUs or a share of one, acceptable GPU models).
//!
//! [`parse_nodes`] turns the node list into executor specs and
//! [`parse_pods`] the pod list into resource requests, checking what the
//! format allows (a fractional share is of exactly one GPU; every pod asks
//! for some CPU).

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use tidewater_operators::model::{ExecutorSpec, GpuDevice, GpuRequest, Name, ResourceRequest};

use super::TraceError;

/// The most GPUs a node list may give one node (the largest machines have
/// 8 to 16; the bound keeps a corrupt count from allocating without limit).
pub const MAX_GPUS_PER_NODE: u16 = 256;

#[derive(Deserialize)]
struct NodeRow {
    sn: String,
    cpu_milli: u64,
    memory_mib: u64,
    gpu: u16,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
struct PodRow {
    #[allow(dead_code)]
    name: String,
    cpu_milli: u32,
    memory_mib: u32,
    num_gpu: u8,
    gpu_milli: u16,
    #[serde(default)]
    gpu_spec: Option<String>,
}

/// Reads an openb node list file (see [`parse_nodes`]).
pub fn read_nodes(path: &Path) -> Result<Vec<ExecutorSpec>, TraceError> {
    parse_nodes(&super::read_file(path)?[..], &path.display().to_string())
}

/// Reads an openb pod list file (see [`parse_pods`]).
pub fn read_pods(path: &Path) -> Result<Vec<ResourceRequest>, TraceError> {
    parse_pods(&super::read_file(path)?[..], &path.display().to_string())
}

/// Parses an openb node list (CSV with a header: `sn`, `cpu_milli`,
/// `memory_mib`, `gpu`, optional `model`) into executor specs, one GPU
/// device per counted GPU.
pub fn parse_nodes(input: impl Read, origin: &str) -> Result<Vec<ExecutorSpec>, TraceError> {
    let mut nodes = Vec::new();
    for (line, n) in rows::<NodeRow>(input, origin)? {
        if n.gpu > MAX_GPUS_PER_NODE {
            return Err(TraceError::Invalid {
                origin: origin.to_string(),
                line,
                detail: format!("gpu {}: more than {MAX_GPUS_PER_NODE} on one node", n.gpu),
            });
        }
        nodes.push({
            let model = Name::from(n.model.unwrap_or_default().trim());
            let mut spec = ExecutorSpec::cpu(n.sn.as_str(), n.cpu_milli, n.memory_mib);
            spec.gpus = (0..n.gpu)
                .map(|_| GpuDevice {
                    model: model.clone(),
                })
                .collect();
            spec
        });
    }
    if nodes.is_empty() {
        return Err(TraceError::Empty {
            origin: origin.to_string(),
            detail: "no nodes",
        });
    }
    Ok(nodes)
}

/// Parses an openb pod list (CSV with a header: `name`, `cpu_milli`,
/// `memory_mib`, `num_gpu`, `gpu_milli`, optional `gpu_spec` as
/// `|`-separated models) into resource requests.
pub fn parse_pods(input: impl Read, origin: &str) -> Result<Vec<ResourceRequest>, TraceError> {
    let mut pods = Vec::new();
    for (line, p) in rows::<PodRow>(input, origin)? {
        let invalid = |detail: String| TraceError::Invalid {
            origin: origin.to_string(),
            line,
            detail,
        };
        let gpu = match (p.num_gpu, p.gpu_milli) {
            (0, _) => GpuRequest::None,
            (1, m) if m > 0 && m < 1000 => GpuRequest::Fraction(m),
            (n, 1000) | (n, 0) => GpuRequest::Whole(n),
            (n, m) => {
                return Err(invalid(format!(
                    "num_gpu {n} with gpu_milli {m}: a share is of one GPU"
                )))
            }
        };
        if p.cpu_milli == 0 {
            return Err(invalid("cpu_milli must be at least 1".into()));
        }
        let gpu_models: Box<[Name]> = if gpu == GpuRequest::None {
            Box::new([])
        } else {
            p.gpu_spec
                .as_deref()
                .unwrap_or_default()
                .split('|')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(Name::from)
                .collect()
        };
        pods.push(ResourceRequest {
            cpu_milli: p.cpu_milli,
            memory_mib: p.memory_mib,
            gpu,
            gpu_models,
            custom: Box::new([]),
        });
    }
    if pods.is_empty() {
        return Err(TraceError::Empty {
            origin: origin.to_string(),
            detail: "no pods",
        });
    }
    Ok(pods)
}

/// The CSV's rows, each with its 1-based line number (the header is line 1).
fn rows<T: serde::de::DeserializeOwned>(
    input: impl Read,
    origin: &str,
) -> Result<Vec<(u64, T)>, TraceError> {
    let invalid = |line: u64, detail: String| TraceError::Invalid {
        origin: origin.to_string(),
        line,
        detail,
    };
    let line_of = |e: &csv::Error| e.position().map_or(1, |p| p.line());
    let mut reader = csv::Reader::from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| invalid(line_of(&e), e.to_string()))?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| invalid(line_of(&e), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let row = record
            .deserialize(Some(&headers))
            .map_err(|e| invalid(line, e.to_string()))?;
        rows.push((line, row));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n";

    #[test]
    fn pods_with_shares_whole_gpus_and_models() {
        let csv =
            format!("{PODS}p0,1000,100,1,500,A10|T4\np1,2000,100,2,1000,\np2,500,10,0,0,V100\n");
        let pods = parse_pods(csv.as_bytes(), "t").expect("valid");
        assert_eq!(pods[0].gpu, GpuRequest::Fraction(500));
        assert_eq!(pods[0].gpu_models.len(), 2);
        assert_eq!(pods[1].gpu, GpuRequest::Whole(2));
        assert!(pods[2].gpu_models.is_empty(), "no GPU, no model constraint");
    }

    #[test]
    fn bad_rows_are_named_by_line() {
        let csv = format!("{PODS}p0,1000,100,1,500,\np1,1000,100,2,500,\n");
        let err = parse_pods(csv.as_bytes(), "t").expect_err("fractional multi-GPU");
        assert!(err.to_string().contains("t line 3"), "{err}");
        let csv = format!("{PODS}p0,lots,100,1,500,A10\n");
        let err = parse_pods(csv.as_bytes(), "t").expect_err("bad number");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = parse_nodes(&b"sn,cpu_milli,memory_mib,gpu\n"[..], "n").expect_err("empty");
        assert!(matches!(err, TraceError::Empty { .. }));
    }

    #[test]
    fn nodes_carry_their_gpus() {
        let csv =
            "sn,cpu_milli,memory_mib,gpu,model\nn0,96000,786432,8,V100M32\nn1,64000,262144,0,\n";
        let nodes = parse_nodes(csv.as_bytes(), "n").expect("valid");
        assert_eq!(nodes[0].gpus.len(), 8);
        assert_eq!(nodes[0].gpus[0].model.as_str(), "V100M32");
        assert!(nodes[1].gpus.is_empty());
    }
}
