#!/usr/bin/env bash
# Measurements behind docs/scale-plan.md, at small sizes (run as root: it
# makes network namespaces, like tests/cluster_equivalence.rs, and removes
# them again):
#  1. timely traffic between hosts: bytes each process sends per second
#     while idle (progress traffic of the 1 ms epochs), and per task while a
#     file of noop tasks runs, at 2 and 4 processes of 1 worker;
#  2. memory: the resident size of one process with E executors, idle.
# Usage: docs/scale-plan/measure.sh path/to/tidewater
set -euo pipefail
bin="$(realpath "${1:?the tidewater binary}")"
work="$(mktemp -d)"
prefix="twm$$"
namespaces=()
cleanup() {
  for p in $(jobs -p); do kill -9 "$p" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

ip netns add "$prefix-lan"; namespaces+=("$prefix-lan")
ip -n "$prefix-lan" link add br0 type bridge
ip -n "$prefix-lan" link set br0 up
for i in 0 1 2 3; do
  ns="$prefix-h$i"; ip netns add "$ns"; namespaces+=("$ns")
  ip -n "$prefix-lan" link add "p$i" type veth peer name eth0 netns "$ns"
  ip -n "$prefix-lan" link set "p$i" master br0 up
  ip -n "$ns" addr add "10.213.0.$((i + 1))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done
tx() { ip -n "$prefix-h$1" -j -s link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'; }

config() { # executors
  cat <<TOML
workers = 1
[http]
enabled = false
[store]
kind = "memory"
[[executors]]
id = "e"
count = $1
cpu_milli = 4000
memory_mib = 4096
TOML
}

tasks=2000
python3 -c "
for i in range($tasks):
    print('{\"id\":\"n%d\",\"kind\":\"noop\"}' % i)" > tasks.jsonl
config 8 > cluster.toml

echo "== timely traffic between hosts (1 worker per process, 8 executors)"
for procs in 2 4; do
  : > hosts
  for ((i = 0; i < procs; i++)); do echo "10.213.0.$((i + 1)):2101" >> hosts; done
  # Idle: the cluster formed, no tasks.
  pids=()
  for ((i = 0; i < procs; i++)); do
    ip netns exec "$prefix-h$i" "$bin" run --config cluster.toml --process "$i" --hostfile hosts 2>"idle$i.log" >/dev/null &
    pids+=($!)
  done
  sleep 4
  before=(); for ((i = 0; i < procs; i++)); do before+=("$(tx "$i")"); done
  sleep 10
  total=0; for ((i = 0; i < procs; i++)); do total=$((total + $(tx "$i") - before[i])); done
  echo "processes=$procs idle: $((total / 10 / procs)) bytes/s sent per process ($((total / 10)) bytes/s in all)"
  for p in "${pids[@]}"; do kill -TERM "$p"; done
  wait "${pids[@]}" 2>/dev/null || true
  # Loaded: every process feeds its share of the tasks and exits when done.
  before=(); for ((i = 0; i < procs; i++)); do before+=("$(tx "$i")"); done
  start=$(date +%s.%N)
  pids=()
  for ((i = 0; i < procs; i++)); do
    ip netns exec "$prefix-h$i" "$bin" run --config cluster.toml --process "$i" --hostfile hosts \
      --input tasks.jsonl --exit-when-done 2>"load$i.log" >/dev/null &
    pids+=($!)
  done
  wait "${pids[@]}"
  end=$(date +%s.%N)
  total=0; for ((i = 0; i < procs; i++)); do total=$((total + $(tx "$i") - before[i])); done
  echo "processes=$procs $tasks noop tasks: $total bytes sent in all, $((total / tasks)) bytes per task, $(python3 -c "print(round($end - $start, 2))") s (incl. start)"
done

echo "== resident memory of one idle process by executor count"
for executors in 100 1000 10000; do
  config "$executors" > "mem$executors.toml"
  "$bin" run --config "mem$executors.toml" 2>"mem$executors.log" >/dev/null &
  pid=$!
  sleep 4
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  echo "executors=$executors rss=${rss} KiB"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
done
