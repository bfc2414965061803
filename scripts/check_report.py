#!/usr/bin/env python3
"""Checks a simulator report (JSON) against the product's invariants.

Usage: check_report.py REPORT.json [--min-conversations N] [--no-sticky] [--issue3]
                       [--max-outage-ms N] [--min-agent-relogins N]
--max-outage-ms N: fails when outages.max_ms > N (the longest wait for a router, wall ms).
--min-agent-relogins N: fails when agent_relogins < N (agents logged in again elsewhere).
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
    "ordering_violations", "agent_relogins",
]
OUTAGE_KEYS = {"count", "max_ms", "p50_ms", "intervals"}


def option(args, name, default=None):
    """Returns the integer value after `name` in args, or default."""
    if name not in args:
        return default
    i = args.index(name)
    if i + 1 >= len(args):
        raise SystemExit(f"{name} needs a value")
    return int(args[i + 1])
KEYS_FLOAT = ["asa_seconds", "service_level_20s", "aht_seconds"]


def main() -> int:
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    path = args[0]
    min_conversations = option(args, "--min-conversations", 1000)
    max_outage_ms = option(args, "--max-outage-ms")
    min_relogins = option(args, "--min-agent-relogins")
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    failures = []
    expected = set(KEYS_INT) | set(KEYS_FLOAT) | {"outages"}
    if set(report) != expected:
        failures.append(f"keys differ: missing {sorted(expected - set(report))}, extra {sorted(set(report) - expected)}")
    for key in KEYS_INT:
        if not isinstance(report.get(key), int) or isinstance(report.get(key), bool):
            failures.append(f"{key} must be an integer, got {report.get(key)!r}")
    for key in KEYS_FLOAT:
        if not isinstance(report.get(key), (int, float)):
            failures.append(f"{key} must be a number, got {report.get(key)!r}")
    outages = report.get("outages")
    if not isinstance(outages, dict) or set(outages) != OUTAGE_KEYS:
        failures.append(f"outages must be an object with keys {sorted(OUTAGE_KEYS)}, got {outages!r}")
    elif not all(isinstance(outages[k], int) for k in ["count", "max_ms", "p50_ms"]) or not all(
            isinstance(i, list) and len(i) == 2 and i[0] <= i[1] for i in outages["intervals"]):
        failures.append("outages: count, max_ms, p50_ms must be integers, intervals [start, end] pairs")
    elif outages["count"] != len(outages["intervals"]):
        failures.append(f"outages.count = {outages['count']} but {len(outages['intervals'])} intervals")
    if failures:
        print("\n".join(failures))
        return 1
    for key in ["lost_conversations", "duplicate_assignments", "capacity_violations", "skill_violations",
                "messages_lost", "ordering_violations"]:
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
    if max_outage_ms is not None and outages["max_ms"] > max_outage_ms:
        failures.append(f"outages.max_ms = {outages['max_ms']} > {max_outage_ms}")
    if min_relogins is not None and report["agent_relogins"] < min_relogins:
        failures.append(f"agent_relogins = {report['agent_relogins']} < {min_relogins}")
    if failures:
        print("report check FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"report check passed: {report['conversations_started']} conversations, "
          f"ASA {report['asa_seconds']:.1f}s, SL20 {report['service_level_20s']:.2f}, "
          f"sticky hits {report['sticky_hits']}, outages {outages['count']} "
          f"(max {outages['max_ms']} ms), agent re-logins {report['agent_relogins']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
