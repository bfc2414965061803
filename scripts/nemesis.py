#!/usr/bin/env python3
"""Random compound faults against the local cluster: a nemesis.

Usage: scripts/nemesis.py --schedules N --seed S --report-json PATH [--keep]
                          [--speed X] [--duration D] [--drain D] [--lease-ttl SECS]

Runs N fault schedules, each on a fresh local cluster (deploy/local/cluster.sh: 3 routers,
2 agent-nodes, 3 etcd members, PostgreSQL, mutual TLS, no dev mode) driven by
`centralino sim`, exactly as scripts/cluster_faults.py runs one scenario. Schedule i draws
its faults from the seed S + i alone, so `--schedules 1 --seed S+i` replays it.

A schedule draws 1-4 faults on distinct processes, each starting at a random moment of a
FAULT_WINDOW_SECS window that opens FAULT_AT_SECS into the sim, so they overlap:
  kill         kill -9, restarted (cluster.sh start) 1-6 s later (any router, agent-node,
               etcd member or PostgreSQL)
  pause-short  SIGSTOP shorter than the lease TTL, then SIGCONT (any process)
  pause-long   SIGSTOP 1-5 s longer than the lease TTL, then SIGCONT (any process)
  drain        SIGTERM of a router (it hands its partitions over), restarted once it exited
When every fault is over, the schedule checks liveness (conversations are completed again
within 20 s), waits for the sim and checks its report with scripts/check_report.py: 0 lost
conversations, 0 lost or duplicated messages, 0 duplicate assignments, 0 capacity and skill
violations, 0 ordering violations; and every process runs at the end.

The report (--report-json) lists each schedule's seed, its faults with their timings (seconds
into the sim), the invariant results and the outage figures the sim measured (count, p50,
max), and sums the faults by kind, the violations and the outages over all schedules.
Exits 1 when a schedule failed; its seed is printed for the replay and its logs are kept.

Network partitions (nftables rules between per-process addresses) are not drawn yet: the
local cluster binds every process to 127.0.0.1.
"""
import argparse
import json
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_faults as cf  # noqa: E402  (the cluster driver this builds on)

ROUTERS = ["router-1", "router-2", "router-3"]
AGENT_NODES = ["agent-node-1", "agent-node-2"]
ETCD = ["etcd-1", "etcd-2", "etcd-3"]
PROCESSES = ROUTERS + AGENT_NODES + ETCD + ["postgres"]
KINDS = ["kill", "pause-short", "pause-long", "drain"]
FAULT_AT_SECS = 10.0
FAULT_WINDOW_SECS = 15.0
# How long a drained router may take to exit before it is killed (the cluster's budget + 5 s).
DRAIN_WAIT_SECS = cf.DRAIN_BUDGET_SECS + 5


def draw_schedule(seed, lease_ttl):
    """The faults of one schedule, from its seed alone."""
    rng = random.Random(seed)
    count = rng.randint(1, 4)
    targets = rng.sample(PROCESSES, count)
    faults = []
    for target in targets:
        kinds = KINDS if target in ROUTERS else [k for k in KINDS if k != "drain"]
        kind = rng.choice(kinds)
        start = round(rng.uniform(0.0, FAULT_WINDOW_SECS), 1)
        if kind == "kill":
            hold = round(rng.uniform(1.0, 6.0), 1)
        elif kind == "pause-short":
            hold = round(rng.uniform(0.3, max(0.5, lease_ttl - 1.0)), 1)
        elif kind == "pause-long":
            hold = round(lease_ttl + rng.uniform(1.0, 5.0), 1)
        else:
            hold = 0.0
        faults.append({"kind": kind, "target": target, "at_s": start, "hold_s": hold})
    faults.sort(key=lambda f: f["at_s"])
    return faults


class Nemesis:
    """Applies one schedule's faults to a running cluster, each in its own thread."""

    def __init__(self, run, faults):
        self.run = run
        self.faults = faults
        self.errors = []

    def since_sim(self):
        return round(time.time() - self.run.sim_started, 1)

    def restart(self, name):
        result = self.run.cluster("start", name, timeout=120)
        if result.returncode != 0:
            self.errors.append(f"cluster.sh start {name} failed (exit {result.returncode}): "
                               f"{result.stderr[-500:]}")

    def apply(self, fault, base):
        delay = base + fault["at_s"] - time.time()
        if delay > 0:
            time.sleep(delay)
        name, kind = fault["target"], fault["kind"]
        try:
            pid = self.run.pid(name)
            fault["began_s"] = self.since_sim()
            if kind == "kill":
                os.kill(pid, signal.SIGKILL)
                cf.wait_until(lambda: not cf.pid_alive(pid), 10, every=0.05)
                time.sleep(fault["hold_s"])
                self.restart(name)
            elif kind in ("pause-short", "pause-long"):
                os.kill(pid, signal.SIGSTOP)
                try:
                    time.sleep(fault["hold_s"])
                finally:
                    os.kill(pid, signal.SIGCONT)
            elif kind == "drain":
                os.kill(pid, signal.SIGTERM)
                if not cf.wait_until(lambda: not cf.pid_alive(pid), DRAIN_WAIT_SECS, every=0.05):
                    self.errors.append(f"{name} still running {DRAIN_WAIT_SECS} s after SIGTERM")
                    os.kill(pid, signal.SIGKILL)
                fault["drained_s"] = round(self.since_sim() - fault["began_s"], 1)
                self.restart(name)
            fault["ended_s"] = self.since_sim()
        except Exception as e:  # a fault that could not be applied fails the schedule
            self.errors.append(f"{kind} {name}: {type(e).__name__}: {e}")

    def run_all(self):
        base = time.time()
        threads = [threading.Thread(target=self.apply, args=(f, base), daemon=True) for f in self.faults]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=FAULT_WINDOW_SECS + DRAIN_WAIT_SECS + 150)
        if any(t.is_alive() for t in threads):
            self.errors.append("a fault did not finish")


def run_schedule(seed, args):
    faults = draw_schedule(seed, args.lease_ttl)
    print(f"schedule seed={seed}: " + ", ".join(f"{f['kind']} {f['target']} @{f['at_s']}s"
                                                 + (f" for {f['hold_s']}s" if f["hold_s"] else "")
                                                 for f in faults), flush=True)
    sim_args = argparse.Namespace(
        speed=args.speed, lease_ttl=args.lease_ttl, duration=args.duration, drain=args.drain,
        conversations=args.conversations, seed=seed, min_conversations=args.min_conversations,
        sim_timeout=args.sim_timeout, fault_at=FAULT_AT_SECS)
    run = cf.Run(f"nemesis-{seed}", sim_args)
    started = time.time()
    result = {"seed": seed, "faults": faults}
    try:
        if run.up():
            run.start_sim()
            if run.sleep_until_fault():
                nemesis = Nemesis(run, faults)
                nemesis.run_all()
                for error in nemesis.errors:
                    run.fail(error)
                cf.liveness_after_fault(run)
                report = run.wait_sim()
                if report is not None:
                    run.check_report(report)
                    outages = report.get("outages") or {}
                    result["outages"] = {k: outages.get(k) for k in ["count", "p50_ms", "max_ms"]}
                    result["invariants"] = {k: report.get(k) for k in [
                        "lost_conversations", "messages_lost", "duplicate_assignments",
                        "capacity_violations", "skill_violations", "ordering_violations"]}
                gone = [n for n in PROCESSES if not cf.pid_alive(run.pid(n))]
                if gone:
                    run.fail(f"not running at the end: {', '.join(gone)}")
            else:
                run.wait_sim()
    except Exception as e:
        run.fail(f"{type(e).__name__}: {e}")
    finally:
        if run.sim is not None and run.sim.poll() is None:
            os.killpg(run.sim.pid, signal.SIGKILL)
            run.sim.wait()
        if run.failures:
            run.logs_to_show = PROCESSES[:5]
            run.show_logs()
        run.down()
    result["figures"] = run.figures
    result["wall_s"] = round(time.time() - started, 1)
    result["passed"] = not run.failures
    result["failures"] = run.failures
    print(f"{'PASS' if result['passed'] else 'FAIL'} schedule seed={seed} ({result['wall_s']} s): "
          f"{json.dumps({'invariants': result.get('invariants'), 'outages': result.get('outages')})}",
          flush=True)
    for failure in run.failures:
        print(f"     - {failure}", flush=True)
    if args.keep or run.failures:
        print(f"     logs and data kept in {run.dir}; replay: scripts/nemesis.py --schedules 1 "
              f"--seed {seed} --report-json /tmp/replay.json", flush=True)
    else:
        import shutil
        shutil.rmtree(run.dir, ignore_errors=True)
    return result


def percentile(values, q):
    if not values:
        return 0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--report-json", required=True)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--speed", type=float, default=30.0)
    parser.add_argument("--duration", default="15m", help="simulated span of arrivals")
    parser.add_argument("--drain", default="20m", help="simulated time for open conversations to end")
    parser.add_argument("--conversations", type=int, default=10000)
    parser.add_argument("--min-conversations", type=int, default=30)
    parser.add_argument("--lease-ttl", type=int, default=3)
    parser.add_argument("--sim-timeout", type=float, default=300.0)
    args = parser.parse_args()
    if args.schedules < 1:
        parser.error("--schedules must be at least 1")
    for tool in ["router", "agent-node", "centralino"]:
        if not os.access(os.path.join(cf.bin_dir(), tool), os.X_OK):
            print(f"missing {os.path.join(cf.bin_dir(), tool)} (cargo build --release --bins)", file=sys.stderr)
            return 2
    print(f"nemesis: {args.schedules} schedules from seed {args.seed} "
          f"(replay one with --schedules 1 --seed SEED)", flush=True)
    began = time.time()
    schedules = [run_schedule(args.seed + i, args) for i in range(args.schedules)]
    by_kind = {}
    for s in schedules:
        for f in s["faults"]:
            by_kind[f["kind"]] = by_kind.get(f["kind"], 0) + 1
    violations = sum(sum(v or 0 for v in (s.get("invariants") or {}).values()) for s in schedules)
    maxima = [s["outages"]["max_ms"] or 0 for s in schedules if s.get("outages")]
    medians = [s["outages"]["p50_ms"] or 0 for s in schedules if s.get("outages")]
    failed = [s["seed"] for s in schedules if not s["passed"]]
    summary = {
        "seed": args.seed, "schedules": len(schedules), "passed": len(schedules) - len(failed),
        "failed_seeds": failed, "faults_by_kind": by_kind, "invariant_violations": violations,
        "outage_max_ms": {"p50": percentile(maxima, 0.5), "p99": percentile(maxima, 0.99),
                          "max": max(maxima, default=0)},
        "outage_p50_ms_median": percentile(medians, 0.5),
        "lease_ttl_secs": args.lease_ttl, "wall_s": round(time.time() - began, 1),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.report_json)), exist_ok=True)
    with open(args.report_json, "w", encoding="utf-8") as f:
        json.dump({"summary": summary, "schedules": schedules}, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"\nnemesis: {summary['passed']}/{len(schedules)} schedules passed, "
          f"{violations} invariant violations, faults {by_kind}; report in {args.report_json}"
          + (f"; FAILED seeds: {failed}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
