#!/usr/bin/env python3
"""Turns the rows benches/compare.sh collected into one Markdown table.

Arguments: results.tsv, machine.txt, and the JSON line printed by
examples/memory_per_user (may be empty). Every ratio is against bare pingora
with the same thread count (the direct backend is compared with 1 thread):
a rate ratio above 1 is better, a CPU ratio above 1 costs more, and the p99
column is the difference in milliseconds.
"""

import json
import math
import sys

COLUMNS = [
    "target", "p50_ms", "p99_ms", "errors_pct", "dropped", "proxy_cpu_us",
    "backend_cpu_us", "k6_cpu_us", "closed_rps", "closed_p99_ms",
    "closed_errors_pct", "wrk_rps", "wrk_non_2xx",
]


def load_rows(path):
    rows = {}
    with open(path) as f:
        for line in f:
            values = line.rstrip("\n").split("\t")
            if len(values) != len(COLUMNS):
                continue
            row = dict(zip(COLUMNS, values))
            for key in COLUMNS[1:]:
                row[key] = float(row[key])
            rows[row["target"]] = row
    return rows


def reference(target):
    threads = target.partition(":")[2] or "1"
    return f"pingora:{threads}"


def fmt(value, digits=2):
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def ratio(value, ref):
    if ref is None or math.isnan(value) or math.isnan(ref) or ref == 0:
        return "n/a"
    return f"{value / ref:.2f}"


def table(rows):
    head = ("| target | p50 ms | p99 ms | p99 - pingora ms | errors % | proxy CPU us/req "
            "| CPU x pingora | k6 64 VUs req/s | x pingora | wrk req/s | x pingora "
            "| backend CPU us/req | k6 CPU us/req |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in rows.items():
        ref = rows.get(reference(name))
        ref_get = (lambda k: ref[k]) if ref else (lambda k: None)
        p99_delta = "n/a" if ref is None else f"{r['p99_ms'] - ref['p99_ms']:+.2f}"
        errors = fmt(r["errors_pct"]) + (f" ({int(r['dropped'])} dropped)" if r["dropped"] else "")
        closed = fmt(r["closed_rps"], 0)
        if r["closed_errors_pct"] > 0:
            closed += f" ({fmt(r['closed_errors_pct'])}% err)"
        wrk = fmt(r["wrk_rps"], 0)
        if r["wrk_non_2xx"] > 0:
            wrk += f" ({int(r['wrk_non_2xx'])} non-2xx)"
        lines.append(
            f"| {name} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {p99_delta} | {errors} "
            f"| {fmt(r['proxy_cpu_us'], 1)} | {ratio(r['proxy_cpu_us'], ref_get('proxy_cpu_us'))} "
            f"| {closed} | {ratio(r['closed_rps'], ref_get('closed_rps'))} "
            f"| {wrk} | {ratio(r['wrk_rps'], ref_get('wrk_rps'))} "
            f"| {fmt(r['backend_cpu_us'], 1)} | {fmt(r['k6_cpu_us'], 1)} |"
        )
    return "\n".join(lines)


def main():
    rows = load_rows(sys.argv[1])
    with open(sys.argv[2]) as f:
        machine = [line.rstrip("\n") for line in f if line.strip()]
    memory = sys.argv[3] if len(sys.argv) > 3 else ""

    print(f"### Load comparison, {machine[0].partition(': ')[2] if machine else ''}")
    print()
    for line in machine[1:]:
        print(f"- {line}")
    print("- the load generator (k6 or wrk), the proxy and the backend share the same "
          "cores; `target:N` is N worker threads (nginx: worker processes)")
    print()
    print(table(rows))
    if memory.strip():
        m = json.loads(memory)
        print()
        print(f"Memory per tracked user: {m['rss_bytes_per_user']:.0f} bytes of resident set "
              f"growth over {m['users']} users (UserTable::bytes_per_user estimate "
              f"{m['estimated_bytes_per_user']} bytes; insert {m['insert_ns_per_user']:.0f} ns "
              f"per new user).")


if __name__ == "__main__":
    main()
