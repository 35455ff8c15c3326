#!/usr/bin/env bash
# The learner's GPU checks, run on a machine with a CUDA device.
#
# Usage: benches/gpu/check.sh BIN_DIR OUT_DIR
#   BIN_DIR holds binaries built on another machine (`cargo test --release
#   --no-run` and `cargo build --release -p tidewater-cli`): `tidewater`,
#   `operators-tests` (tidewater-operators' unit tests) and `learning-loop`
#   (dataflows/tests/learning_loop.rs). OUT_DIR receives one log per check.
#
# It finds the driver and NVRTC (cudarc loads them by name at run time),
# runs the CPU/GPU comparison and the pipeline's learning loop on cuda:0,
# then `tidewater bench-learner` on the device and on the host's CPUs.
set -uo pipefail
bin=${1:?BIN_DIR}; out=${2:?OUT_DIR}
mkdir -p "$out"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nproc; grep -m1 'model name' /proc/cpuinfo
  ldconfig -p | grep -E 'libcuda\.so|libnvrtc' || true
} 2>&1 | tee "$out/machine.log"

# cudarc looks for libnvrtc.so, .so.12, .so.11 ...: point an unversioned
# name at whatever NVRTC the toolkit ships, and put its folder (which holds
# libnvrtc-builtins) on the library path.
nvrtc=$(ls /usr/local/cuda/lib64/libnvrtc.so.* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.* 2>/dev/null | grep -v builtins | head -1)
if [ -z "$nvrtc" ]; then
  nvrtc=$(find /usr /opt -name 'libnvrtc.so.*' 2>/dev/null | grep -v builtins | head -1)
fi
echo "nvrtc: $nvrtc" | tee -a "$out/machine.log"
mkdir -p /tmp/cudalibs && ln -sf "$nvrtc" /tmp/cudalibs/libnvrtc.so
export LD_LIBRARY_PATH=/tmp/cudalibs:$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

run() { # name, command...
  local name=$1; shift
  echo "== $name: $*" | tee -a "$out/summary.log"
  timeout 120 "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 4 "$out/$name.log" | tee -a "$out/summary.log"
  echo "-- rc=$rc" | tee -a "$out/summary.log"
}

run unit "$bin/operators-tests" --test-threads 1 learn::
TIDEWATER_TEST_LEARNER_DEVICE=cuda:0 run loop "$bin/learning-loop" --nocapture

tw="$bin/tidewater"
{
  for b in 256 1024 4096 16384; do
    timeout 60 "$tw" bench-learner --device cuda:0 --batch-size $b --samples 200000000 --json
  done
  timeout 60 "$tw" bench-learner --device cuda:0 --batch-size 256 --samples 5000000 --host-batches --json
  timeout 60 "$tw" bench-learner --device cuda:0 --batch-size 4096 --samples 50000000 --host-batches --json
  for b in 256 4096; do
    timeout 60 "$tw" bench-learner --device cuda:0 --model mlp --batch-size $b --samples 20000000 --json
  done
  timeout 60 "$tw" bench-learner --device cpu --threads 2 --samples 50000000 --json
  timeout 60 "$tw" bench-learner --device cpu --threads "$(nproc)" --samples 200000000 --json
  timeout 60 "$tw" bench-learner --device cpu --model mlp --threads "$(nproc)" --samples 20000000 --json
} 2>&1 | tee "$out/bench.log"
