#!/usr/bin/env bash
# Interleaved A/B of proxies under wrk: bare pingora against Headroom
# variants, all running at once, measured in alternating rounds so that a
# busy neighbour on a shared machine slows every target alike instead of
# whichever happened to run at the time. Reports, per target, the median over
# rounds of wrk's requests/s and of the proxy's CPU time per request
# (utime+stime from /proc/PID/stat over the round), each with its ratio to
# bare pingora.
#
# Targets (all with THREADS worker threads, the same backend, 1 000 users):
#   pingora           examples/bare_pingora
#   headroom          headroom run, benches/headroom-bench.yaml (all on)
#   headroom_fixed    ... with admission.adaptive: false (fixed limit 256)
#   headroom_no_gate  ... with admission.enabled: false
#
# Usage: bash benches/ab_wrk.sh       (after the release build of compare.sh)
# Environment: ROUNDS (6), SECS per round (5), THREADS (1), CONNS (64),
#   USERS (1000), BASE_PORT (18100). Bounded: ROUNDS x 4 x SECS seconds.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
ROUNDS=${ROUNDS:-6}
SECS=${SECS:-5}
THREADS=${THREADS:-1}
CONNS=${CONNS:-64}
USERS=${USERS:-1000}
BASE_PORT=${BASE_PORT:-18100}
OUT=$(mktemp -d /tmp/headroom-ab.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
STARTED=()

cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (see benches/compare.sh)" >&2; exit 1; }
done

backend_port=$BASE_PORT
"$BIN_DIR/examples/bench_backend" --listen "127.0.0.1:$backend_port" --lifetime-secs 900 \
  >"$OUT/backend.log" 2>&1 &
STARTED+=("$!")

declare -A PORT PID
start_headroom() {
  local name=$1 port=$2 enabled=$3 adaptive=$4
  sed -e "s/^threads: .*/threads: $THREADS/" -e "s/^  enabled: true/  enabled: $enabled/" \
    -e "s/^  adaptive: true/  adaptive: $adaptive/" "$ROOT/benches/headroom-bench.yaml" >"$OUT/$name.yaml"
  RUST_LOG=warn "$BIN_DIR/headroom" run --config "$OUT/$name.yaml" --listen "127.0.0.1:$port" \
    --admin "127.0.0.1:$((port + 100))" --upstream "127.0.0.1:$backend_port" >"$OUT/$name.log" 2>&1 &
  PID[$name]=$!
  PORT[$name]=$port
  STARTED+=("$!")
}

"$BIN_DIR/examples/bare_pingora" --listen "127.0.0.1:$((BASE_PORT + 1))" \
  --upstream "127.0.0.1:$backend_port" --threads "$THREADS" >"$OUT/pingora.log" 2>&1 &
PID[pingora]=$!
PORT[pingora]=$((BASE_PORT + 1))
STARTED+=("$!")
start_headroom headroom $((BASE_PORT + 2)) true true
start_headroom headroom_fixed $((BASE_PORT + 3)) true false
start_headroom headroom_no_gate $((BASE_PORT + 4)) false true
TARGETS=(pingora headroom headroom_fixed headroom_no_gate)

# Every target must answer before the rounds start (at most 10 s).
for t in "${TARGETS[@]}"; do
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$t]}/api/items/1" || true)
    [[ $code == 200 ]] && break
    sleep 0.1
  done
  [[ $code == 200 ]] || { echo "$t did not come up, see $OUT" >&2; exit 1; }
done

ticks() {
  local stat f
  stat=$(<"/proc/$1/stat")
  read -r -a f <<<"${stat##*) }"
  echo $((f[11] + f[12]))
}

: >"$OUT/rounds.tsv"
for round in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    before=$(ticks "${PID[$t]}")
    USERS=$USERS wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$ROOT/benches/wrk/api_keys.lua" \
      "http://127.0.0.1:${PORT[$t]}/api/items/1" >"$OUT/wrk-$t-$round.log" 2>&1 || true
    after=$(ticks "${PID[$t]}")
    rps=$(awk '/Requests\/sec/ { print $2 }' "$OUT/wrk-$t-$round.log")
    count=$(awk '/requests in/ { print $1 }' "$OUT/wrk-$t-$round.log")
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "${rps:-0}" "${count:-0}" "$((after - before))" \
      >>"$OUT/rounds.tsv"
  done
  echo "round $round of $ROUNDS done" >&2
done

python3 - "$OUT/rounds.tsv" "$CLK_TCK" "$SECS" "$THREADS" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import statistics, sys
path, tck, secs, threads, load = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
rps, cpu = {}, {}
for line in open(path):
    _, t, r, count, ticks = line.split("\t")
    rps.setdefault(t, []).append(float(r))
    if float(count) > 0:
        cpu.setdefault(t, []).append(float(ticks) / tck * 1e6 / float(count))
order = list(dict.fromkeys(l.split("\t")[1] for l in open(path)))
ref_rps, ref_cpu = statistics.median(rps["pingora"]), statistics.median(cpu["pingora"])
print(f"wrk -t1 -c64, {len(rps['pingora'])} rounds of {secs:.0f}s, {threads} thread(s); load average at the end {load}")
print()
print("| target | wrk req/s (median) | x pingora | min - max | proxy CPU us/req (median) | x pingora |")
print("|---|---|---|---|---|---|")
for t in order:
    m, c = statistics.median(rps[t]), statistics.median(cpu[t])
    print(f"| {t} | {m:.0f} | {m / ref_rps:.2f} | {min(rps[t]):.0f} - {max(rps[t]):.0f} | {c:.1f} | {c / ref_cpu:.2f} |")
PY
echo "logs in $OUT" >&2
