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
# With MODE=latency each round is instead a k6 constant arrival rate of RATE
# requests/s (default: 1/8 of bare pingora's wrk max, measured first: on a
# machine where k6 shares the cores, more than that and k6 itself drops
# requests), and the table gives p50 and p99 per target and the median over
# rounds of each round's p99 minus pingora's (neighbouring runs, so a busy
# moment of the machine cancels out).
#
# Usage: bash benches/ab_wrk.sh       (after the release build of compare.sh)
#        MODE=latency bash benches/ab_wrk.sh
# Environment: MODE (max), ROUNDS (6), SECS per round (5; 10 for latency),
#   THREADS (1), CONNS (64), USERS (1000), RATE (see above), BASE_PORT (18100).
#   Bounded: about ROUNDS x 4 x SECS seconds.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
MODE=${MODE:-max}
ROUNDS=${ROUNDS:-6}
if [[ $MODE == latency ]]; then SECS=${SECS:-10}; else SECS=${SECS:-5}; fi
RATE=${RATE:-}
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

tools=(wrk curl python3)
[[ $MODE == latency ]] && tools+=(k6)
for tool in "${tools[@]}"; do
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

# One wrk run of SECS against target $1; prints "req/s count".
wrk_round() {
  USERS=$USERS wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$ROOT/benches/wrk/api_keys.lua" \
    "http://127.0.0.1:${PORT[$1]}/api/items/1" >"$OUT/wrk-$1-$2.log" 2>&1 || true
  echo "$(awk '/Requests\/sec/ { print $2 }' "$OUT/wrk-$1-$2.log") $(awk '/requests in/ { print $1 }' "$OUT/wrk-$1-$2.log")"
}

# One k6 constant-rate run of SECS at RATE against target $1; prints
# "p50_ms p99_ms count dropped".
k6_round() {
  local summary=$OUT/k6-$1-$2.json
  k6 run --quiet --no-color --summary-export "$summary" -e "TARGET=http://127.0.0.1:${PORT[$1]}/api/items/1" \
    -e "USERS=$USERS" -e "RATE=$RATE" -e "DURATION=${SECS}s" -e P99_MS=100000 -e MAX_DROP=1 \
    "$ROOT/benches/k6/constant_rate.js" >"${summary%.json}.log" 2>&1 || true
  python3 - "$summary" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
d = m["http_req_duration"]
print(d["p(50)"], d["p(99)"], m["http_reqs"]["count"], m.get("dropped_iterations", {}).get("count", 0))
PY
}

if [[ $MODE == latency && -z $RATE ]]; then
  read -r max _ < <(wrk_round pingora rate-probe)
  RATE=$(python3 -c "import sys; print(int(float(sys.argv[1] or 0) / 8) or 1000)" "$max")
  echo "rate $RATE req/s: 1/8 of bare pingora's wrk max ($max req/s)" >&2
fi

: >"$OUT/rounds.tsv"
for round in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    before=$(ticks "${PID[$t]}")
    if [[ $MODE == latency ]]; then
      read -r p50 p99 count dropped < <(k6_round "$t" "$round")
      rps=$p50 # the third column holds p50 in this mode
    else
      read -r rps count < <(wrk_round "$t" "$round")
      p99=0 dropped=0
    fi
    after=$(ticks "${PID[$t]}")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "${rps:-0}" "${count:-0}" \
      "$((after - before))" "${p99:-0}" "${dropped:-0}" >>"$OUT/rounds.tsv"
  done
  echo "round $round of $ROUNDS done" >&2
done

# Where the adaptive limit settled, and how many requests waited at the gate.
gate_state() {
  curl -s "http://127.0.0.1:$((PORT[$1] + 100))/metrics" |
    awk '/^headroom_admission_limit |^headroom_event_loop_lag_seconds / { printf "%s=%s ", $1, $2 }
         /^headroom_admission_wait_seconds_count/ { n += $2 } END { printf "waited_over_100us=%d", n }'
}
for t in headroom headroom_fixed; do echo "$t: $(gate_state "$t")" >&2; done

python3 - "$OUT/rounds.tsv" "$CLK_TCK" "$SECS" "$THREADS" "$(cut -d' ' -f1-3 /proc/loadavg)" "$MODE" "$RATE" <<'PY'
import statistics, sys
path, tck, secs, threads, load, mode, rate = sys.argv[1:8]
tck, secs = float(tck), float(secs)
rps, cpu, p99, dropped, by_round = {}, {}, {}, {}, {}
for line in open(path):
    rnd, t, r, count, ticks, q99, drop = line.rstrip("\n").split("\t")
    rps.setdefault(t, []).append(float(r))
    p99.setdefault(t, []).append(float(q99))
    dropped.setdefault(t, []).append(float(drop))
    by_round.setdefault(rnd, {})[t] = float(q99)
    if float(count) > 0:
        cpu.setdefault(t, []).append(float(ticks) / tck * 1e6 / float(count))
order = list(dict.fromkeys(l.split("\t")[1] for l in open(path)))
ref_cpu = statistics.median(cpu["pingora"])
if mode == "latency":
    print(f"k6 constant rate {rate} req/s, {len(rps['pingora'])} rounds of {secs:.0f}s, {threads} thread(s); "
          f"load average at the end {load}")
    print()
    print("| target | p50 ms (median) | p99 ms (median) | p99 - pingora ms (median of rounds) | min - max | "
          "dropped (median) | proxy CPU us/req | x pingora |")
    print("|---|---|---|---|---|---|---|---|")
    for t in order:
        deltas = [r[t] - r["pingora"] for r in by_round.values() if t in r and "pingora" in r]
        c = statistics.median(cpu[t])
        print(f"| {t} | {statistics.median(rps[t]):.2f} | {statistics.median(p99[t]):.2f} | "
              f"{statistics.median(deltas):+.2f} | {min(deltas):+.2f} - {max(deltas):+.2f} | "
              f"{statistics.median(dropped[t]):.0f} | {c:.1f} | {c / ref_cpu:.2f} |")
    sys.exit(0)
ref_rps = statistics.median(rps["pingora"])
print(f"wrk -t1 -c64, {len(rps['pingora'])} rounds of {secs:.0f}s, {threads} thread(s); load average at the end {load}")
print()
print("| target | wrk req/s (median) | x pingora | min - max | proxy CPU us/req (median) | x pingora |")
print("|---|---|---|---|---|---|")
for t in order:
    m, c = statistics.median(rps[t]), statistics.median(cpu[t])
    print(f"| {t} | {m:.0f} | {m / ref_rps:.2f} | {min(rps[t]):.0f} - {max(rps[t]):.0f} | {c:.1f} | {c / ref_cpu:.2f} |")
PY
echo "logs in $OUT" >&2
