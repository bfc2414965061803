#!/usr/bin/env bash
# Checks the operator-facing deployment assets in deploy/:
#   - the generated copies under deploy/k8s are in sync with their sources,
#   - every kustomize overlay renders without warnings and validates against the Kubernetes
#     schemas (kubernetes-validate, strict; NetworkPolicy included) plus minimal schemas of the
#     two Prometheus Operator kinds and of cert-manager's Certificate, Issuer and ClusterIssuer
#     (scripts/check_cert_manager.py), and every pod runs non-root, read-only, without
#     privilege escalation or capabilities, with seccomp RuntimeDefault, probes and resource
#     limits,
#   - the security checks of scripts/check_k8s_security.py on each render: no credential in a
#     ConfigMap, Secret values only CHANGE-ME- placeholders, TLS files from cert-manager
#     Secrets with the right SPIFFE URIs, etcd https + client-cert auth, no --dev/--insecure,
#     and the NetworkPolicy connection matrix (default-deny, internal ports from centralino
#     pods only, etcd client/peer ports, metrics from Prometheus only, PostgreSQL's 5432 from
#     routers only), nothing durable on an emptyDir (data dirs on persistent volume claims),
#     PostgreSQL's password and DSN from Secrets only, with TLS (verify-full),
#   - promtool check rules / test rules on deploy/prometheus,
#   - promtool check metrics on a scrape of a live node reports nothing,
#   - every metric the dashboard and the rules use is in that scrape (scripts/check_dashboard.py),
#     and has a sample in the scrape of a fresh node, before any traffic, when one is given.
#
# Usage:
#   scripts/check_deploy.sh METRICS_FILE [FRESH_METRICS_FILE]
#                                          run every check; METRICS_FILE is a scrape of a live
#                                          node's /metrics (curl -s http://127.0.0.1:9464/metrics),
#                                          FRESH_METRICS_FILE one of a node that served nothing
#   scripts/check_deploy.sh --sync         regenerate the copies under deploy/k8s, then exit
#
# Installs what it needs when missing (as root, no prompts): promtool from Debian's prometheus
# package, python3-venv, and kubernetes-validate (pinned in scripts/requirements-deploy.txt)
# in a virtualenv under target/. kubectl must already be installed; python3 3.11 or newer
# (tomllib: --sync renders the configuration copy and the credentials placeholders with it).
# Environment: K8S_VERSION (schemas to validate against, default below), DEPLOY_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."

# Kubernetes version whose schemas the manifests must satisfy. 1.30 is the oldest the
# manifests work on (the preStop `sleep` action); kubernetes-validate 1.37.0 ships 1.33's.
K8S_VERSION=${K8S_VERSION:-1.33.0}
VENV=${DEPLOY_VENV:-target/deploy-venv}
OUT=target/deploy
OVERLAYS=(standalone cluster cluster-per-pod-identity cluster-external-postgresql)

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'check_deploy.sh: %s\n' "$*" >&2; exit 1; }

apt_updated=false
apt_install() {
  [ "$(id -u)" = 0 ] || fail "need root to install $* (apt-get install -y $*)"
  if ! $apt_updated; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- generated copies --------------------------------------------------------------------
# kustomize reads only files below a kustomization, so deploy/k8s keeps copies of the example
# configuration (without its credentials, which become CHANGE-ME- placeholders of the Secret
# in credentials.env) and the dashboard, and wraps rules.yaml's groups in a PrometheusRule.
render_copies() { # $1: directory to write deploy/k8s's generated files into
  local dest=$1
  mkdir -p "$dest/base" "$dest/components/monitoring"
  python3 scripts/check_k8s_security.py render-config deploy/config/centralino.example.toml \
    >"$dest/base/centralino.toml"
  python3 scripts/check_k8s_security.py render-credentials deploy/config/centralino.example.toml \
    >"$dest/base/credentials.env"
  cp deploy/grafana/centralino.json "$dest/components/monitoring/centralino.json"
  {
    cat <<'EOF'
# GENERATED from deploy/prometheus/rules.yaml by `scripts/check_deploy.sh --sync`: edit that
# file, then sync. The recording rules and alerts, for the Prometheus Operator.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: centralino
  labels:
    app.kubernetes.io/name: centralino
spec:
EOF
    # Everything from `groups:` on, indented under spec (comments and block scalars kept).
    sed -n '/^groups:/,$p' deploy/prometheus/rules.yaml | sed 's/^\(.\)/  \1/'
  } >"$dest/components/monitoring/prometheusrule.yaml"
}
GENERATED=(base/centralino.toml base/credentials.env components/monitoring/centralino.json
           components/monitoring/prometheusrule.yaml)

if [ "${1:-}" = "--sync" ]; then
  render_copies deploy/k8s
  echo "check_deploy.sh: regenerated ${GENERATED[*]} under deploy/k8s"
  exit 0
fi

[ $# -ge 1 ] || { echo "usage: $0 METRICS_FILE [FRESH_METRICS_FILE] | $0 --sync" >&2; exit 2; }
METRICS_FILE=$1
FRESH_METRICS_FILE=${2:-}
[ -s "$METRICS_FILE" ] || fail "metrics file $METRICS_FILE is missing or empty"
[ -z "$FRESH_METRICS_FILE" ] || [ -s "$FRESH_METRICS_FILE" ] ||
  fail "metrics file $FRESH_METRICS_FILE is missing or empty"
started=$(date +%s)

# --- tools -------------------------------------------------------------------------------
step "tools"
command -v kubectl >/dev/null 2>&1 ||
  fail "kubectl is not installed; it is needed for 'kubectl kustomize' (kustomize v5). Install it from the Kubernetes package repository or your distribution."
kubectl version --client 2>/dev/null | sed -n 1,2p
command -v python3 >/dev/null 2>&1 || apt_install python3
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool (Debian package prometheus)"
  apt_install prometheus
  # The package starts a Prometheus server where systemd runs; the checks need only promtool.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
promtool --version 2>&1 | sed -n 1p

# kubernetes-validate in a virtualenv (Debian's system Python refuses pip installs, PEP 668).
requirements=scripts/requirements-deploy.txt
if ! cmp -s "$requirements" "$VENV/requirements-deploy.txt" 2>/dev/null; then
  echo "installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $VENV"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    apt_install python3-venv # Debian ships ensurepip separately
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$VENV/requirements-deploy.txt"
fi
PY="$VENV/bin/python"
echo "kubernetes-validate $("$PY" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p'), schemas of Kubernetes $K8S_VERSION"

# --- generated copies in sync ------------------------------------------------------------
step "generated copies under deploy/k8s"
mkdir -p "$OUT"
fresh=$(mktemp -d "$OUT/sync.XXXXXX")
trap 'rm -rf "$fresh"' EXIT
render_copies "$fresh"
for file in "${GENERATED[@]}"; do
  if ! cmp -s "$fresh/$file" "deploy/k8s/$file"; then
    diff -u "deploy/k8s/$file" "$fresh/$file" | sed -n 1,20p >&2 || true
    fail "deploy/k8s/$file is stale: run scripts/check_deploy.sh --sync"
  fi
done
echo "in sync: ${GENERATED[*]}"

# --- kustomize + schema validation -------------------------------------------------------
for overlay in "${OVERLAYS[@]}"; do
  step "kubectl kustomize deploy/k8s/overlays/$overlay"
  rendered="$OUT/$overlay.yaml"
  kubectl kustomize "deploy/k8s/overlays/$overlay" >"$rendered" 2>"$OUT/$overlay.stderr" ||
    { cat "$OUT/$overlay.stderr" >&2; fail "kustomize failed on overlay $overlay"; }
  if [ -s "$OUT/$overlay.stderr" ]; then
    cat "$OUT/$overlay.stderr" >&2
    fail "kustomize printed warnings for overlay $overlay"
  fi
  echo "rendered $(grep -c '^kind:' "$rendered") resources into $rendered"

  # kubernetes-validate (strict: unknown fields are errors) for the built-in kinds; the two
  # Prometheus Operator kinds against the minimal schemas below and cert-manager's kinds
  # against scripts/check_cert_manager.py (kubernetes-validate has no CRD schemas); any other
  # kind without a schema fails. Then the pod policy of this project.
  "$PY" - "$K8S_VERSION" "$rendered" <<'PYEOF'
import sys
sys.path.insert(0, "scripts")
import jsonschema
from check_cert_manager import SCHEMAS as CERT_MANAGER_SCHEMAS
import yaml
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

version, path = sys.argv[1], sys.argv[2]

meta = {"type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                       "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}
selector = {"type": "object", "properties": {
    "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
    "matchExpressions": {"type": "array"}}, "additionalProperties": False}
duration = {"type": "string", "pattern": r"^(0|(([0-9]+)(y|w|d|h|m|s|ms))+)$"}
rule = {"type": "object", "required": ["expr"], "additionalProperties": False,
        "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
        "properties": {"record": {"type": "string"}, "alert": {"type": "string"},
                       "expr": {"type": ["string", "integer"]}, "for": duration,
                       "keep_firing_for": duration,
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                       "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"metadata": meta, "spec": {
            "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"}, "selector": selector,
                "namespaceSelector": {"type": "object"},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"port": {"type": "string"}, "targetPort": {},
                                   "path": {"type": "string"}, "scheme": {"enum": ["http", "https"]},
                                   "interval": duration, "scrapeTimeout": duration,
                                   "honorLabels": {"type": "boolean"},
                                   "relabelings": {"type": "array"},
                                   "metricRelabelings": {"type": "array"}}}}}}}},
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"metadata": meta, "spec": {
            "type": "object", "required": ["groups"], "additionalProperties": False,
            "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "interval": duration,
                               "limit": {"type": "integer"},
                               "rules": {"type": "array", "items": rule}}}}}}}},
}
CRD_SCHEMAS.update(CERT_MANAGER_SCHEMAS)

errors = []
with open(path) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
seen = set()
for doc in docs:
    kind, api = doc.get("kind"), doc.get("apiVersion")
    name = doc.get("metadata", {}).get("name")
    key = (api, kind, name)
    if key in seen:
        errors.append("duplicate %s/%s" % (kind, name))
    seen.add(key)
    where = "%s/%s" % (kind, name)
    if (api, kind) in CRD_SCHEMAS:
        for e in jsonschema.Draft202012Validator(CRD_SCHEMAS[(api, kind)]).iter_errors(doc):
            errors.append("%s: %s: %s" % (where, ".".join(map(str, e.absolute_path)), e.message))
        continue
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except ValidationError as e:
        errors.append("%s: %s: %s" % (where, ".".join(map(str, e.path)), e.message))
    except SchemaNotFoundError as e:
        errors.append("%s: no schema (%s)" % (where, e))

    # Pod policy: every workload runs locked down, probed and bounded.
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec")
    if pod is None:
        continue
    psc = pod.get("securityContext", {})
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        errors.append("%s: pod seccompProfile is not RuntimeDefault" % where)
    if pod.get("automountServiceAccountToken") is not False:
        errors.append("%s: automountServiceAccountToken is not false" % where)
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        cw = "%s container %s" % (where, c.get("name"))
        sc = c.get("securityContext", {})
        if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
            errors.append("%s: runAsNonRoot is not true" % cw)
        if sc.get("readOnlyRootFilesystem") is not True:
            errors.append("%s: readOnlyRootFilesystem is not true" % cw)
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append("%s: allowPrivilegeEscalation is not false" % cw)
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            errors.append("%s: capabilities do not drop ALL" % cw)
        res = c.get("resources", {})
        for kind_ in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind_, {}):
                    errors.append("%s: no %s.%s" % (cw, kind_, r))
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in c:
                errors.append("%s: no %s" % (cw, probe))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    for c in pod.get("containers", []):
        sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if sleep >= grace:
            errors.append("%s: preStop sleep %ss leaves no time in a %ss grace period"
                          % (where, sleep, grace))

for e in errors:
    print("validate: " + e, file=sys.stderr)
if errors:
    sys.exit(1)
print("validated %d resources against Kubernetes %s (strict) and the pod policy" % (len(docs), version))
PYEOF
  "$PY" scripts/check_k8s_security.py check "$rendered" "${overlay%%-*}"
done

# The checks can fail: broken variants of the cluster render must be refused.
step "security checks and cert-manager schemas refuse broken variants of the renders"
"$PY" scripts/check_k8s_security.py selftest "$OUT/cluster.yaml" "$OUT/standalone.yaml" \
  "$OUT/cluster-external-postgresql.yaml"
"$PY" scripts/check_cert_manager.py --selftest "$OUT/cluster.yaml"

# --- Prometheus rules --------------------------------------------------------------------
step "promtool check rules"
promtool check rules deploy/prometheus/rules.yaml
step "promtool test rules"
promtool test rules deploy/prometheus/rules_test.yaml

# --- the live node's metrics -------------------------------------------------------------
step "promtool check metrics < $METRICS_FILE"
lint=$(promtool check metrics <"$METRICS_FILE" 2>&1) || true
if [ -n "$lint" ]; then
  printf '%s\n' "$lint" >&2
  fail "promtool check metrics reported problems in $METRICS_FILE"
fi
echo "no problems"

step "dashboard and rules use only exported metrics"
"$PY" scripts/check_dashboard.py deploy/grafana/centralino.json "$METRICS_FILE" \
  --rules deploy/prometheus/rules.yaml
if [ -n "$FRESH_METRICS_FILE" ]; then
  step "a fresh node exports them all from its first scrape"
  lint=$(promtool check metrics <"$FRESH_METRICS_FILE" 2>&1) || true
  if [ -n "$lint" ]; then
    printf '%s\n' "$lint" >&2
    fail "promtool check metrics reported problems in $FRESH_METRICS_FILE"
  fi
  "$PY" scripts/check_dashboard.py deploy/grafana/centralino.json "$FRESH_METRICS_FILE" \
    --rules deploy/prometheus/rules.yaml --samples
fi

echo
echo "check_deploy.sh: all deployment checks passed in $(( $(date +%s) - started ))s"
