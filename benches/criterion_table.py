#!/usr/bin/env python3
"""Prints the latest criterion results as one Markdown table of medians.

    python3 benches/criterion_table.py [CRITERION_DIR]

CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion, else target/criterion.
Each row is one benchmark's most recent run (`new/`): the median time per
operation with its 95% confidence interval, and the operations per second
that median implies. The benches book CPU time of the measuring thread
(benches/support/measurement.rs), so these are CPU nanoseconds and
operations per CPU-second. Rows are ordered by group, in the order the
benches define them where known, else alphabetically.
"""

import json
import os
import sys
from pathlib import Path

GROUP_ORDER = [
    "decision_path", "decision_path_threads", "identify", "record_arrival",
    "insert_new_user", "tier_for", "classify", "classify_user_agent", "check",
]


def default_dir():
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path(__file__).resolve().parent.parent / "target")
    return Path(target) / "criterion"


def fmt_ns(ns):
    if ns < 1e3:
        return f"{ns:.1f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns / 1e6:.2f} ms"


def fmt_rate(per_sec):
    if per_sec >= 1e6:
        return f"{per_sec / 1e6:.2f} M/s"
    if per_sec >= 1e3:
        return f"{per_sec / 1e3:.1f} K/s"
    return f"{per_sec:.0f} /s"


def rows(root):
    found = []
    for bench in root.rglob("new/benchmark.json"):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        median = est["median"]
        found.append((meta["group_id"], meta["full_id"], median))
    order = {g: i for i, g in enumerate(GROUP_ORDER)}
    found.sort(key=lambda r: (order.get(r[0], len(order)), r[0], r[1]))
    return found


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default_dir()
    if not root.is_dir():
        sys.exit(f"no criterion results in {root}: run `cargo bench` first")
    print("| benchmark | median (CPU) | 95% CI | ops per CPU-second |")
    print("|---|---|---|---|")
    for _, full_id, median in rows(root):
        ci = median["confidence_interval"]
        point = median["point_estimate"]
        print(f"| {full_id} | {fmt_ns(point)} | {fmt_ns(ci['lower_bound'])} – "
              f"{fmt_ns(ci['upper_bound'])} | {fmt_rate(1e9 / point)} |")


if __name__ == "__main__":
    main()
