#!/usr/bin/env python3
"""Checks a simulator report (JSON) against the product's invariants.

Usage: check_report.py REPORT.json [--min-conversations N] [--no-sticky] [--issue3]
Exits 1 with one line per failed check.
"""
import json
import sys

KEYS_INT = [
    "conversations_started", "conversations_completed", "conversations_abandoned",
    "conversations_offline", "conversations_escalated", "conversations_open",
    "lost_conversations", "duplicate_assignments", "capacity_violations", "skill_violations",
    "messages_sent", "messages_delivered", "messages_lost", "csat_good", "csat_bad",
    "recontacts_7d", "sticky_hits", "sticky_misses", "transfers", "language_handovers",
]
KEYS_FLOAT = ["asa_seconds", "service_level_20s", "aht_seconds"]


def main() -> int:
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    path = args[0]
    min_conversations = 1000
    if "--min-conversations" in args:
        min_conversations = int(args[args.index("--min-conversations") + 1])
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    failures = []
    expected = set(KEYS_INT) | set(KEYS_FLOAT)
    if set(report) != expected:
        failures.append(f"keys differ: missing {sorted(expected - set(report))}, extra {sorted(set(report) - expected)}")
    for key in KEYS_INT:
        if not isinstance(report.get(key), int) or isinstance(report.get(key), bool):
            failures.append(f"{key} must be an integer, got {report.get(key)!r}")
    for key in KEYS_FLOAT:
        if not isinstance(report.get(key), (int, float)):
            failures.append(f"{key} must be a number, got {report.get(key)!r}")
    if failures:
        print("\n".join(failures))
        return 1
    for key in ["lost_conversations", "duplicate_assignments", "capacity_violations", "skill_violations", "messages_lost"]:
        if report[key] != 0:
            failures.append(f"{key} = {report[key]} (must be 0)")
    outcomes = sum(report[k] for k in [
        "conversations_completed", "conversations_abandoned", "conversations_offline",
        "conversations_escalated", "conversations_open"])
    if outcomes != report["conversations_started"]:
        failures.append(f"outcomes add up to {outcomes}, not conversations_started = {report['conversations_started']}")
    if report["conversations_started"] < min_conversations:
        failures.append(f"conversations_started = {report['conversations_started']} < {min_conversations}")
    if "--no-sticky" not in args and report["sticky_hits"] <= 0:
        failures.append("sticky_hits must be > 0")
    if "--issue3" in args:
        for key in ["language_handovers", "transfers", "conversations_offline",
                    "conversations_escalated", "recontacts_7d"]:
            if report[key] <= 0:
                failures.append(f"{key} must be > 0 in the default demo")
    if not 0.0 <= report["service_level_20s"] <= 1.0:
        failures.append("service_level_20s must be within 0..1")
    if report["messages_delivered"] > report["messages_sent"]:
        failures.append("more messages delivered than sent")
    if failures:
        print("report check FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"report check passed: {report['conversations_started']} conversations, "
          f"ASA {report['asa_seconds']:.1f}s, SL20 {report['service_level_20s']:.2f}, "
          f"sticky hits {report['sticky_hits']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
