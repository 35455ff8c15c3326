#!/usr/bin/env bash
# The measurements behind docs/scale-plan.md, at small sizes. Run as root:
# it makes test hosts in network namespaces on a virtual bridge (the layout
# of tests/common/netns.rs) and removes them again.
#
#  1. Timely traffic between hosts, read from each host's veth counters:
#     bytes and packets each process sends per second while idle (the
#     progress traffic of the 1 ms epochs), and per task while a file of
#     noop tasks runs; 2 and 4 processes of 1 worker, and 2 processes of 2
#     workers (to tell per-worker from per-process costs).
#  2. Coordinator memory: the resident size of one idle process holding
#     100, 1,000 and 10,000 executors, with 1 and with 2 workers (every
#     shard keeps the whole cluster's executors).
#  3. Store write rates: noop tasks fed from a file until every outcome is
#     recorded, with the embedded (redb, durable commits) and the memory
#     store, in one process and in a 2-process cluster (a store per process);
#     and the embedded store's bytes per task.
#
# Usage: docs/scale-plan/measure.sh path/to/tidewater [traffic_tasks] [store_tasks]
# Prints one `key=value ...` line per figure.
set -euo pipefail
bin="$(realpath "${1:?the tidewater binary}")"
tasks="${2:-20000}"
store_tasks="${3:-20000}"
work="$(mktemp -d)"
prefix="twmeasure$$"
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
# Host $1's transmitted bytes and packets.
tx() {
  ip -n "$prefix-h$1" -j -s link show eth0 |
    python3 -c 'import json,sys; t=json.load(sys.stdin)[0]["stats64"]["tx"]; print(t["bytes"], t["packets"])'
}
now() { date +%s.%N; }
elapsed() { python3 -c "print(round($2 - $1, 3))"; }

config() { # workers executors store
  cat <<TOML
workers = $1
[http]
enabled = false
[store]
$3
[[executors]]
id = "e"
count = $2
cpu_milli = 4000
memory_mib = 4096
TOML
}
memory_store='kind = "memory"'
embedded_store='kind = "embedded"
path = "store/tasks.redb"'

noops() { python3 -c "
for i in range($1):
    print('{\"id\":\"n%d\",\"kind\":\"noop\"}' % i)"; }
noops "$tasks" > tasks.jsonl
noops "$store_tasks" > store-tasks.jsonl

# Starts process $2 of a cluster of $1 on host $2 with config $3 and extra
# arguments; adds its pid to `pids`.
start() {
  local procs=$1 i=$2 config=$3; shift 3
  ip netns exec "$prefix-h$i" "$bin" run --config "$config" --process "$i" --hostfile hosts "$@" \
    2>"log.$procs.$i" >/dev/null &
  pids+=($!)
}

echo "== timely traffic between hosts (8 executors)"
for shape in 2x1 4x1 2x2; do
  procs=${shape%x*} workers=${shape#*x}
  config "$workers" 8 "$memory_store" > cluster.toml
  : > hosts
  for ((i = 0; i < procs; i++)); do echo "10.213.0.$((i + 1)):2101" >> hosts; done
  # Idle: the cluster formed, no tasks.
  pids=()
  for ((i = 0; i < procs; i++)); do start "$procs" "$i" cluster.toml; done
  sleep 4
  before_b=(); before_p=()
  for ((i = 0; i < procs; i++)); do read -r b p < <(tx "$i"); before_b+=("$b"); before_p+=("$p"); done
  sleep 10
  bytes=0; packets=0
  for ((i = 0; i < procs; i++)); do
    read -r b p < <(tx "$i"); bytes=$((bytes + b - before_b[i])); packets=$((packets + p - before_p[i]))
  done
  echo "shape=$shape idle bytes_per_s_per_process=$((bytes / 10 / procs)) packets_per_s_per_process=$((packets / 10 / procs)) bytes_per_s_cluster=$((bytes / 10))"
  for p in "${pids[@]}"; do kill -TERM "$p"; done
  wait "${pids[@]}" 2>/dev/null || true
  # Loaded: every process feeds its share of the tasks and exits when done.
  before_b=()
  for ((i = 0; i < procs; i++)); do read -r b _ < <(tx "$i"); before_b+=("$b"); done
  t0=$(now)
  pids=()
  for ((i = 0; i < procs; i++)); do
    start "$procs" "$i" cluster.toml --input tasks.jsonl --exit-when-done
  done
  wait "${pids[@]}"
  t1=$(now)
  bytes=0
  for ((i = 0; i < procs; i++)); do read -r b _ < <(tx "$i"); bytes=$((bytes + b - before_b[i])); done
  echo "shape=$shape load tasks=$tasks bytes_sent=$bytes bytes_per_task=$((bytes / tasks)) seconds=$(elapsed "$t0" "$t1") (start, cluster formation and progress included)"
done

echo "== resident memory of one idle process by executor count"
for workers in 1 2; do
  for executors in 100 1000 10000; do
    config "$workers" "$executors" "$memory_store" > "mem.toml"
    "$bin" run --config mem.toml 2>"mem.log" >/dev/null &
    pid=$!
    sleep 5
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    echo "workers=$workers executors=$executors rss_kib=$rss"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  done
done

echo "== store write rates ($store_tasks noop tasks fed from a file, until every outcome is recorded)"
# What a run of one task costs (start, cluster formation, drain), taken off
# the timed runs below.
echo '{"id":"warm","kind":"noop"}' > one.jsonl
config 1 8 "$memory_store" > single.toml
t0=$(now); "$bin" run --config single.toml --input one.jsonl --exit-when-done 2>/dev/null >/dev/null; t1=$(now)
start1=$(elapsed "$t0" "$t1")
printf '10.213.0.1:2101\n10.213.0.2:2101\n' > hosts
t0=$(now)
pids=()
start 2 0 single.toml --input one.jsonl --exit-when-done
start 2 1 single.toml --input one.jsonl --exit-when-done
wait "${pids[@]}"; t1=$(now)
start2=$(elapsed "$t0" "$t1")
echo "one-task run: processes=1 seconds=$start1 processes=2 seconds=$start2"
rate() { python3 -c "print(round($store_tasks / max($2 - $1 - $3, 1e-3)))"; }
for store in memory embedded; do
  if [ "$store" = memory ]; then body=$memory_store; else body=$embedded_store; fi
  config 1 8 "$body" > single.toml
  rm -rf store
  t0=$(now)
  "$bin" run --config single.toml --input store-tasks.jsonl --exit-when-done 2>single.log >/dev/null
  t1=$(now)
  size=$( (du -cb store 2>/dev/null || true) | awk 'END {print $1}')
  echo "processes=1 store=$store tasks=$store_tasks seconds=$(elapsed "$t0" "$t1") tasks_per_s_less_start=$(rate "$t0" "$t1" "$start1") store_bytes=${size:-0}"
  config 1 8 "$body" > cluster.toml
  rm -rf store
  t0=$(now)
  pids=()
  start 2 0 cluster.toml --input store-tasks.jsonl --exit-when-done
  start 2 1 cluster.toml --input store-tasks.jsonl --exit-when-done
  wait "${pids[@]}"
  t1=$(now)
  size=$( (du -cb store 2>/dev/null || true) | awk 'END {print $1}')
  echo "processes=2 store=$store tasks=$store_tasks seconds=$(elapsed "$t0" "$t1") tasks_per_s_less_start=$(rate "$t0" "$t1" "$start2") store_bytes=${size:-0}"
done
