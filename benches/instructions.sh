#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: bare pingora
# against `headroom run` with every feature on, on the same backend and the
# same wrk load (1,000 api-key users). Instruction counts do not depend on
# what else the machine is doing, so this is the repeatable companion of
# ab_wrk.sh's wall-clock ratios on a shared, noisy machine.
#
# Each proxy runs under valgrind --tool=callgrind with one worker thread; it
# is warmed with a short load, its counters are zeroed, a measured load runs,
# and the counters are dumped. Instructions per request = total instructions
# of the dump (every thread: workers, background tasks, health checks) /
# requests wrk completed. The top functions by inclusive cost are printed for
# Headroom so a regression can be traced to its source.
#
# Usage: bash benches/instructions.sh        (after the release build:
#        cargo build --release -j2 --bin headroom --examples)
# Environment: SECS (10) per measured load, CONNS (4), USERS (1000),
#   BASE_PORT (18300). Bounded: about 2 x (SECS + 20) seconds.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
SECS=${SECS:-10}
CONNS=${CONNS:-4}
USERS=${USERS:-1000}
BASE_PORT=${BASE_PORT:-18300}
OUT=$(mktemp -d /tmp/headroom-instr.XXXXXX)
STARTED=()

cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

for tool in valgrind callgrind_annotate callgrind_control wrk curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install valgrind wrk curl)" >&2; exit 1; }
done

backend=$BASE_PORT
"$BIN_DIR/examples/bench_backend" --listen "127.0.0.1:$backend" --lifetime-secs 600 \
  >"$OUT/backend.log" 2>&1 &
STARTED+=("$!")

wait_for() {
  local url=$1 i
  for i in $(seq 1 600); do
    curl -fsS -o /dev/null -H 'x-api-key: k_bench_0' "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing answers at $url" >&2
  return 1
}

# load URL SECS: wrk's completed request count.
load() {
  USERS=$USERS wrk -t1 -c"$CONNS" -d"$2s" -s "$ROOT/benches/wrk/api_keys.lua" "$1" \
    | awk '/requests in/ {print $1}'
}

# measure NAME PORT CMD...: instructions per request of CMD under callgrind.
measure() {
  local name=$1 port=$2
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.%p.cg" "$@" \
    >"$OUT/$name.log" 2>&1 &
  local pid=$!
  STARTED+=("$pid")
  wait_for "http://127.0.0.1:$port/api/items/1"
  load "http://127.0.0.1:$port/api/items/1" 3 >/dev/null
  callgrind_control -z "$pid" >/dev/null
  local requests
  requests=$(load "http://127.0.0.1:$port/api/items/1" "$SECS")
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  local dump
  dump=$(ls -t "$OUT/$name.$pid.cg"* | grep -v "\.cg$" | head -1)
  local instructions
  instructions=$(awk '/^summary:/ {print $2}' "$dump")
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "$name $requests $instructions $dump"
}

sed -e "s/^threads: .*/threads: 1/" "$ROOT/benches/headroom-bench.yaml" >"$OUT/headroom.yaml"

pingora=$(measure pingora $((BASE_PORT + 1)) "$BIN_DIR/examples/bare_pingora" \
  --listen "127.0.0.1:$((BASE_PORT + 1))" --upstream "127.0.0.1:$backend" --threads 1)
headroom=$(RUST_LOG=warn measure headroom $((BASE_PORT + 2)) "$BIN_DIR/headroom" run \
  --config "$OUT/headroom.yaml" --listen "127.0.0.1:$((BASE_PORT + 2))" \
  --admin "127.0.0.1:$((BASE_PORT + 3))" --upstream "127.0.0.1:$backend")

echo
echo "Headroom's top functions by inclusive instructions (per request):"
read -r _ requests _ dump <<<"$headroom"
callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null \
  | grep -E 'headroom|pingora_proxy::proxy_h1|::request_filter|::logging|::response_filter|upstream_' \
  | head -40 | awk -v n="$requests" '{gsub(",","",$1); printf "%10.0f  %s\n", $1/n, substr($0, index($0,$2))}' \
  || true # head closes the pipe early; that is not a failure
echo
printf '%-10s %10s %16s %14s %8s\n' target requests instructions "instr/request" ratio
base=""
for row in "$pingora" "$headroom"; do
  read -r name requests instructions _ <<<"$row"
  per=$(( instructions / (requests > 0 ? requests : 1) ))
  [ -z "$base" ] && base=$per
  printf '%-10s %10s %16s %14s %8.2f\n' "$name" "$requests" "$instructions" "$per" \
    "$(echo "$per / $base" | bc -l)"
done

echo
echo "raw dumps and logs: $OUT"
