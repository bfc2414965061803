#!/usr/bin/env python3
"""Checks that the Grafana dashboard and the Prometheus rules only use metrics a node exports.

Usage: check_dashboard.py DASHBOARD_JSON METRICS_FILE [--rules RULES_YAML] [--samples]

DASHBOARD_JSON is deploy/grafana/centralino.json, METRICS_FILE a scrape of a live node's
/metrics (Prometheus text format), RULES_YAML defaults to deploy/prometheus/rules.yaml.

It extracts every metric name used in the dashboard's PromQL expressions (panel targets and
template-variable queries, including Grafana's label_values(metric, label)) and in the rules'
`expr` fields, and fails if one is neither exported by the node nor produced by Prometheus
itself (`up`, the scrape_* series, ALERTS) nor defined by a recording rule in RULES_YAML.
A histogram's `_bucket`, `_sum` and `_count` series match the histogram declared in the file.
With --samples (for the scrape of a fresh node, before traffic) a name counts only if the file
has a sample of it: HELP and TYPE lines alone do not.

It also checks the dashboard's shape: the rows (service, queues, agents, routing, cluster),
the department, language and team template variables, unique panel ids, and that every panel
has at least one query.
"""

import argparse
import json
import os
import re
import sys

try:
    import yaml
except ImportError:  # PyYAML comes with kubernetes-validate in check_deploy.sh's venv
    sys.exit("check_dashboard.py: PyYAML is missing (pip install pyyaml)")

# Series that Prometheus creates itself; a node never exports them.
PROMETHEUS_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}

# PromQL words that look like identifiers but are not metric names.
PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
    # aggregation operators (may be written `sum by (x) (...)`, so not always before "(")
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}

REQUIRED_ROWS = ["service", "queues", "agents", "routing", "cluster"]
REQUIRED_VARIABLES = ["department", "language", "team"]

IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def strip_promql(expr):
    """Removes everything from a PromQL expression that is not a metric or function name."""
    # Grafana's label_values(metric, label): keep the metric, drop the label argument.
    expr = re.sub(r"label_values\s*\(\s*([^,()]*?)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)",
                  r" \1 ", expr)
    expr = re.sub(r"label_values\s*\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)", " ", expr)
    # Comments and string literals (label values, label_replace arguments, regexes).
    expr = re.sub(r"#[^\n]*", " ", expr)
    expr = re.sub(r'"(?:\\.|[^"\\])*"', " ", expr)
    expr = re.sub(r"'(?:\\.|[^'\\])*'", " ", expr)
    expr = re.sub(r"`[^`]*`", " ", expr)
    # Label matchers {…}, range and subquery selectors […], grouping clauses (label lists).
    expr = re.sub(r"\{[^{}]*\}", " ", expr)
    expr = re.sub(r"\[[^\[\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", expr)
    # Grafana variables ($var, ${var}, ${var:csv}, [[var]]) and durations after offset.
    expr = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\]", " ", expr)
    expr = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", expr)
    # Numbers, including 1e3, 0x1f and durations like 5m.
    expr = re.sub(r"(?<![A-Za-z0-9_:])[0-9][0-9a-zA-Z.]*", " ", expr)
    return expr


def metric_names(expr):
    """Returns the metric names a PromQL expression selects."""
    text = strip_promql(expr)
    names = set()
    for match in IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end():].lstrip()
        if rest.startswith("("):  # a function call
            continue
        if word in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def exported_series(path):
    """Returns (series names sampled, {declared name: type}) from Prometheus text format."""
    sampled, declared = set(), {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split()
                if len(parts) >= 4 and parts[1] == "TYPE":
                    declared[parts[2]] = parts[3]
                elif len(parts) >= 3 and parts[1] == "HELP":
                    declared.setdefault(parts[2], "untyped")
                continue
            match = IDENT.match(line)
            if match:
                sampled.add(match.group(0))
    return sampled, declared


def is_exported(name, sampled, declared, samples_only=False):
    if name in sampled:
        return True
    if samples_only:
        return False
    if name in declared:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if declared.get(base) in ("histogram", "summary"):
                return True
    return False


def dashboard_queries(dashboard):
    """Yields (where, expr) for every panel target and template-variable query."""
    def walk_panels(panels):
        for panel in panels:
            yield panel
            yield from walk_panels(panel.get("panels", []))

    for panel in walk_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                yield "panel %r" % panel.get("title"), expr
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and query:
            yield "variable %r" % var.get("name"), query


def dashboard_shape_errors(dashboard):
    errors = []
    panels = dashboard.get("panels", [])
    rows = [p.get("title", "").lower() for p in panels if p.get("type") == "row"]
    for row in REQUIRED_ROWS:
        if not any(title.startswith(row) for title in rows):
            errors.append("no row titled %r" % row)
    names = [v.get("name") for v in dashboard.get("templating", {}).get("list", [])]
    for var in REQUIRED_VARIABLES:
        if var not in names:
            errors.append("no template variable %r" % var)
    ids = set()
    for panel in panels:
        pid = panel.get("id")
        if pid in ids:
            errors.append("duplicate panel id %r" % pid)
        ids.add(pid)
        if panel.get("type") != "row" and not panel.get("targets"):
            errors.append("panel %r has no query" % panel.get("title"))
        if "gridPos" not in panel:
            errors.append("panel %r has no gridPos" % panel.get("title"))
    if not dashboard.get("uid"):
        errors.append("the dashboard has no uid")
    return errors


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dashboard")
    parser.add_argument("metrics_file")
    parser.add_argument("--rules", default=os.path.join(here, "..", "deploy", "prometheus",
                                                        "rules.yaml"))
    parser.add_argument("--samples", action="store_true",
                        help="a name needs a sample in METRICS_FILE (a fresh node's scrape)")
    args = parser.parse_args()

    with open(args.dashboard, encoding="utf-8") as f:
        dashboard = json.load(f)
    with open(args.rules, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    sampled, declared = exported_series(args.metrics_file)
    if not sampled and not declared:
        sys.exit("check_dashboard.py: %s holds no metrics" % args.metrics_file)

    recorded, uses = set(), []
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            if "record" in rule:
                recorded.add(rule["record"])
            where = "rule %r" % (rule.get("record") or rule.get("alert"))
            uses.append((where, str(rule.get("expr", ""))))
    uses.extend(dashboard_queries(dashboard))

    errors = dashboard_shape_errors(dashboard)
    checked = set()
    for where, expr in uses:
        names = metric_names(expr)
        if not names:
            errors.append("%s: no metric found in %r" % (where, expr))
        for name in sorted(names):
            checked.add(name)
            if name in recorded or name in PROMETHEUS_SERIES:
                continue
            if not is_exported(name, sampled, declared, args.samples):
                errors.append("%s uses %s, which %s does not %s"
                              % (where, name, args.metrics_file,
                                 "sample" if args.samples else "export"))
    for error in errors:
        print("check_dashboard.py: " + error, file=sys.stderr)
    if errors:
        return 1
    print("check_dashboard.py: %d queries use %d metric names, all exported or recorded"
          % (len(uses), len(checked)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
