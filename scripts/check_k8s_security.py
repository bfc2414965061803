#!/usr/bin/env python3
"""Security checks of the rendered Kubernetes manifests, and the renderer of the credentials.

Subcommands (scripts/check_deploy.sh calls them):

  render-config EXAMPLE        prints the configuration the ConfigMap ships: EXAMPLE (the
                               example centralino.toml) with every credential key removed; a
                               comment in its place names the environment variable (a key of
                               the Secret centralino-credentials) that carries it instead
  render-credentials EXAMPLE   prints the placeholder credentials.env of that Secret: one
                               CENTRALINO_... = CHANGE-ME-... line per credential the nodes need
  check RENDERED OVERLAY       checks one rendered overlay (kubectl kustomize output):
      - no ConfigMap holds a password, secret or token key (nor an argon2id hash), and no pod
        sets one as a literal environment value;
      - every value of the Secrets the manifests generate is a CHANGE-ME-... placeholder, and
        every key addresses something the configuration has (an agent's index exists ...);
      - every $(VAR) in a pod's env refers to a variable defined before it (Kubernetes expands
        nothing else);
      - every node runs without --dev/--insecure, with public TLS files, and in the cluster
        overlay with internal mTLS and etcd client TLS files that are mounted from Secrets
        cert-manager writes, from Certificates whose URI SANs name the pod's role;
      - the cert-manager chain resolves: every issuerRef names an Issuer of the render, CA
        Issuers point at the Secret of an isCA Certificate;
      - etcd serves clients and peers over https only, with client-cert auth on both, and is
        probed on its plain-HTTP metrics listener;
      - Services with a cluster IP expose only the public port; internal ports are reached
        through headless Services only;
      - NetworkPolicies: a namespace default-deny, and the connection matrix evaluated from the
        policies (Kubernetes semantics: a connection needs an egress allow at the source and an
        ingress allow at the destination): public ports open to all, ports named `internal`
        only from the nodes that call them (RouterInternal: agent-nodes and
        routers; AgentNodeInternal: routers), etcd's client port only from routers and agent-nodes, its peer port
        only from etcd, metrics only from Prometheus in the monitoring namespace, PostgreSQL's
        5432 only from routers (self-contained: its pod; managed: the ipBlock of the routers'
        egress, which no other pod gets and which is not the whole internet);
      - nothing durable on an emptyDir or a container's own filesystem: a router's data_dir when
        it holds the embedded store (standalone) or the archive (a cluster router without the
        PostgreSQL DSN), etcd's --data-dir and PostgreSQL's PGDATA are on persistent volume
        claims (an agent-node's data dir, and a cluster router's with PostgreSQL, are scratch);
      - PostgreSQL, the cluster's record: its password and the routers' DSN
        (CENTRALINO_RECORD__POSTGRES_URL) only by secretKeyRef, never a literal, an argument or
        the ConfigMap ([record] postgres_url unset there); the Secret centralino-postgres holds
        placeholders only; the DSN has sslmode=verify-full and an sslrootcert mounted from a
        ConfigMap or only the ca.crt of a Secret; self-contained, the DSN names the server's
        user, database, password and a DNS name of its certificate, and the server (image pinned)
        runs with ssl=on and a pg_hba that admits TLS + SCRAM network connections only.

  selftest CLUSTER STANDALONE EXTERNAL
                               applies broken variants to renders of overlays/cluster,
                               overlays/standalone and overlays/cluster-external-postgresql and
                               fails unless the checks refuse each one (and pass the originals)

Exit status 1 with one line per problem.
"""

from __future__ import annotations

import base64
import re
import sys
import tomllib

# Configuration keys that hold a credential: never in a ConfigMap.
SECRET_KEY = re.compile(r"(^|[_-])(password|secret|token)([_-]hash)?$", re.IGNORECASE)
PLACEHOLDER = "CHANGE-ME-"
# Credential keys of the example moved to the Secret, and the key the Secret sets instead
# (plaintext `password`/`token` are dev-mode keys: production carries their hashes).
MOVED = {"password": "password_hash", "password_hash": "password_hash",
         "token": "token_hash", "token_hash": "token_hash",
         "shop_secret": "shop_secret", "visitor_secret": "visitor_secret",
         "etcd_password": "etcd_password"}
# Dev-mode-only keys: removed from the ConfigMap, not carried by the Secret.
DEV_ONLY = {("node", "admin_token")}
# Keys that hold a credential inside a value (a DSN with its password), carried by a Secret
# of their own, referenced by secretKeyRef (not by centralino-credentials): removed from the
# ConfigMap with a comment naming the Secret, key and variable.
OWN_SECRET = {("record", "postgres_url"): ("centralino-postgres", "postgres-url")}
# The PostgreSQL record: the Secret, the variables that carry its password or DSN (only ever
# from a Secret), a DSN with a password in it (never in a ConfigMap, an argument or a
# literal value), and where the routers find the server's CA (sslrootcert).
PG_SECRET = "centralino-postgres"
PG_URL_ENV = "CENTRALINO_RECORD__POSTGRES_URL"
PG_SECRET_ENV = {PG_URL_ENV, "POSTGRES_PASSWORD", "PGPASSWORD", "POSTGRES_PASSWORD_FILE", "PGPASSFILE"}
DSN_WITH_PASSWORD = re.compile(r"postgres(ql)?://[^/@\s:]*:[^/@\s]+@", re.IGNORECASE)
# Credentials every production node needs, whether or not the example sets them.
ALWAYS = {("identity", "shop_secret"): "CHANGE-ME-shop-secret-hex-32-bytes",
          ("identity", "visitor_secret"): "CHANGE-ME-visitor-secret-hex-32-bytes"}

HEADER = """\
# GENERATED by `scripts/check_deploy.sh --sync` from deploy/config/centralino.example.toml:
# edit that file, then sync. Credentials are not here: each one is a key of the Secret
# centralino-credentials (base/credentials.env, placeholders; see SECURITY.md), set as the
# CENTRALINO_* environment variable named where the example has the key.
"""


# --- rendering ---------------------------------------------------------------------------
def _env_name(path: list[str]) -> str:
    return "CENTRALINO_" + "__".join(p.upper() for p in path)


def split_example(text: str) -> tuple[str, list[tuple[list[str], str]]]:
    """Returns the example without its credential lines, and the moved keys as
    (path in the configuration, placeholder)."""
    doc = tomllib.loads(text)
    section: list[str] = []
    counts: dict[str, int] = {}
    out: list[str] = []
    moved: list[tuple[list[str], str]] = []
    for line in text.splitlines(keepends=True):
        header = re.match(r"^\s*\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]", line)
        table = re.match(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]", line)
        if header:
            name = header.group(1)
            counts[name] = counts.get(name, -1) + 1
            section = name.split(".") + [str(counts[name])]
        elif table:
            section = table.group(1).split(".")
        key = re.match(r"^(\s*)([A-Za-z0-9_-]+)\s*=", line)
        if key and tuple(section + [key.group(2)]) in OWN_SECRET:
            secret, secret_key = OWN_SECRET[tuple(section + [key.group(2)])]
            out.append(f"{key.group(1)}# {key.group(2)}: from the Secret {secret} (key {secret_key}), "
                       f"{_env_name(section + [key.group(2)])}\n")
            continue
        if key and (key.group(2) in MOVED or tuple(section + [key.group(2)]) in DEV_ONLY):
            indent, name = key.group(1), key.group(2)
            if tuple(section + [name]) in DEV_ONLY:
                out.append(f"{indent}# {name}: dev mode only, not set in Kubernetes\n")
                continue
            target = section + [MOVED[name]]
            owner = _lookup(doc, section)
            label = owner.get("id") or owner.get("name") if isinstance(owner, dict) else None
            what = {"password_hash": "argon2id-hash", "token_hash": "token-hash"}.get(
                MOVED[name], MOVED[name].replace("_", "-"))
            placeholder = PLACEHOLDER + what + (f"-of-{section[0].rstrip('s')}-{label}" if label else "")
            moved.append((target, placeholder))
            out.append(f"{indent}# {MOVED[name]}: from the Secret, {_env_name(target)}\n")
            continue
        out.append(line)
    stripped = HEADER + "".join(out)
    # Whatever the line-based pass missed (an inline table, a dotted key) is a credential left
    # in the ConfigMap: refuse rather than ship it.
    leftover = list(_secret_keys(tomllib.loads(stripped), []))
    if leftover:
        raise SystemExit("render-config: credential keys the renderer cannot move: "
                         + ", ".join(".".join(p) for p in leftover))
    paths = {tuple(p) for p, _ in moved}
    for path, value in ALWAYS.items():
        if path not in paths:
            moved.append((list(path), value))
    return stripped, moved


def _lookup(doc, path):
    node = doc
    for part in path:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return None
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def _secret_keys(node, path):
    if isinstance(node, dict):
        for k, v in node.items():
            if SECRET_KEY.search(k):
                yield path + [k]
            yield from _secret_keys(v, path + [k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _secret_keys(v, path + [str(i)])


def _strings(node, path):
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, path + [k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, path + [str(i)])


def render_credentials(moved) -> str:
    lines = [
        "# GENERATED by `scripts/check_deploy.sh --sync` from deploy/config/centralino.example.toml.",
        "# Placeholders only: a node outside dev mode refuses to start with a CHANGE-ME- value.",
        "# Do not edit: give kustomize your own file in your overlay (see SECURITY.md):",
        "#   secretGenerator:",
        "#     - name: centralino-credentials",
        "#       behavior: replace",
        "#       envs: [credentials.env]     # kept out of version control",
        "# Agents: `centralino hash-password` prints an argon2id PHC string for password_hash.",
        "# Operators: `centralino new-token` prints a token and the token_hash to store here.",
        "# Shop and visitor secrets: `openssl rand -hex 32` each.",
        "# Each line is an environment variable of the nodes (CENTRALINO_<SECTION>__<KEY>, an",
        "# index into [[agents]] / [[operators]] as in the example's order).",
    ]
    lines += [f"{_env_name(path)}={value}" for path, value in moved]
    return "\n".join(lines) + "\n"


# --- checks ------------------------------------------------------------------------------
class Render:
    def __init__(self, docs):
        self.docs = docs
        self.by_kind: dict[str, list[dict]] = {}
        for d in docs:
            self.by_kind.setdefault(d["kind"], []).append(d)

    def kind(self, kind):
        return self.by_kind.get(kind, [])

    def workloads(self):
        for d in self.docs:
            if d["kind"] in ("StatefulSet", "Deployment", "DaemonSet"):
                yield d


def name(d):
    return d.get("metadata", {}).get("name", "?")


def pod_labels(w):
    return w["spec"]["template"].get("metadata", {}).get("labels", {})


def matches(selector, labels) -> bool:
    """Kubernetes label selector semantics ({} and None select everything)."""
    if selector is None:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def check_configmaps(r: Render, errors):
    for cm in r.kind("ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            where = f"ConfigMap/{name(cm)} {key}"
            if SECRET_KEY.search(key.rsplit(".", 1)[0]):
                errors.append(f"{where}: a credential as a ConfigMap key")
            if "$argon2" in text or re.search(r"sha256:[0-9a-f]{64}", text):
                errors.append(f"{where}: holds a password or token hash")
            # TOML: its values (a comment may show the DSN's form); any other file: its text.
            if not key.endswith(".toml") and DSN_WITH_PASSWORD.search(text):
                errors.append(f"{where}: holds a PostgreSQL DSN with a password (belongs in the Secret {PG_SECRET})")
            if key.endswith(".toml"):
                try:
                    doc = tomllib.loads(text)
                except tomllib.TOMLDecodeError as e:
                    errors.append(f"{where}: invalid TOML: {e}")
                    continue
                for path in _secret_keys(doc, []):
                    errors.append(f"{where}: credential key {'.'.join(path)} (belongs in a Secret)")
                for path, value in _strings(doc, []):
                    if DSN_WITH_PASSWORD.search(value):
                        errors.append(f"{where}: {'.'.join(path)} holds a PostgreSQL DSN with a password "
                                      f"(belongs in the Secret {PG_SECRET})")
                for path, (secret, secret_key) in OWN_SECRET.items():
                    if _lookup(doc, list(path)):
                        errors.append(f"{where}: {'.'.join(path)} is set (it belongs in the Secret "
                                      f"{secret}, key {secret_key})")


def config_doc(r: Render):
    for cm in r.kind("ConfigMap"):
        text = (cm.get("data") or {}).get("centralino.toml")
        if text is not None:
            return tomllib.loads(text)
    return None


def is_generated(n, base):
    """Whether n is the generator's name base, with or without kustomize's content hash."""
    return re.fullmatch(re.escape(base) + r"(-[a-z0-9]{10})?", n) is not None


def secret_values(s):
    return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (s.get("data") or {}).items()}


def check_secrets(r: Render, errors):
    config = config_doc(r)
    for s in r.kind("Secret"):
        where = f"Secret/{name(s)}"
        if is_generated(name(s), PG_SECRET):
            continue  # its own rules: check_postgres
        for key, value in (s.get("stringData") or {}).items():
            errors.append(f"{where} {key}: stringData (use a generator)")
        for key, b64 in (s.get("data") or {}).items():
            value = base64.b64decode(b64).decode("utf-8", "replace")
            if not value.startswith(PLACEHOLDER):
                errors.append(f"{where} {key}: value is not a {PLACEHOLDER}... placeholder")
            if not key.startswith("CENTRALINO_") or "__" not in key:
                errors.append(f"{where} {key}: not a CENTRALINO_<SECTION>__<KEY> variable")
                continue
            path = [p.lower() for p in key[len("CENTRALINO_"):].split("__")]
            if not SECRET_KEY.search(path[-1]):
                errors.append(f"{where} {key}: not a credential key (configuration belongs in the ConfigMap)")
            if config is not None:
                parent = _lookup(config, path[:-1])
                # An array index must exist in the ConfigMap's configuration (the loader refuses
                # an index past the end); a table may be created by the variable.
                for i, part in enumerate(path[:-1]):
                    if part.isdigit() and not isinstance(_lookup(config, path[:i]), list):
                        errors.append(f"{where} {key}: {'.'.join(path[:i])} is not an array of the configuration")
                    elif part.isdigit() and _lookup(config, path[: i + 1]) is None:
                        errors.append(f"{where} {key}: no {'.'.join(path[:i])}[{part}] in the configuration")
                if parent is not None and not isinstance(parent, dict):
                    errors.append(f"{where} {key}: {'.'.join(path[:-1])} is not a table")
    # Every agent of the configuration has its password hash in a Secret.
    if config is not None:
        keys = {k for s in r.kind("Secret") for k in (s.get("data") or {})}
        for i, agent in enumerate(config.get("agents", [])):
            k = f"CENTRALINO_AGENTS__{i}__PASSWORD_HASH"
            if k not in keys:
                errors.append(f"agent {agent.get('id')}: no {k} in a Secret")
        for i, op in enumerate(config.get("operators", [])):
            k = f"CENTRALINO_OPERATORS__{i}__TOKEN_HASH"
            if k not in keys:
                errors.append(f"operator {op.get('name')}: no {k} in a Secret")


def containers(w):
    pod = w["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod.get("containers", [])


def env_map(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def mounted_file(w, c, path, certs_by_secret, errors, where):
    """Returns the Certificate (or CSI volume attributes) behind a mounted file, else None."""
    pod = w["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/") + "/"
        if not path.startswith(mp):
            continue
        if "subPath" in m:
            errors.append(f"{where}: {path} is mounted with subPath (not updated on renewal)")
        v = volumes.get(m["name"], {})
        if "secret" in v:
            secret = v["secret"]["secretName"]
            cert = certs_by_secret.get(secret)
            if cert is None:
                errors.append(f"{where}: {path} comes from Secret {secret}, which no Certificate writes")
            if v["secret"].get("defaultMode", 0o644) & 0o007:
                errors.append(f"{where}: Secret volume {m['name']} is world-readable (defaultMode)")
            return cert
        if "csi" in v and v["csi"].get("driver") == "csi.cert-manager.io":
            return {"csi": v["csi"].get("volumeAttributes", {})}
        errors.append(f"{where}: {path} is on volume {m['name']}, not a Secret or cert-manager CSI volume")
        return None
    errors.append(f"{where}: {path} is not on any mounted volume")
    return None


def cert_uris(cert):
    if cert is None:
        return []
    if "csi" in cert:
        return [u.strip() for u in cert["csi"].get("csi.cert-manager.io/uri-sans", "").split(",") if u.strip()]
    return cert["spec"].get("uris", [])


def check_nodes(r: Render, overlay, errors):
    certs_by_secret = {c["spec"]["secretName"]: c for c in r.kind("Certificate")}
    # The generator's name, with kustomize's content hash.
    credential_secrets = {name(s) for s in r.kind("Secret")
                          if re.fullmatch(r"centralino-credentials(-[a-z0-9]{10})?", name(s))}
    nodes = 0
    for w in r.workloads():
        labels = pod_labels(w)
        if labels.get("app.kubernetes.io/name") != "centralino":
            continue
        role = labels.get("app.kubernetes.io/component")
        for c in containers(w):
            where = f"{w['kind']}/{name(w)} container {c['name']}"
            nodes += 1
            args = c.get("args", []) + c.get("command", [])
            for flag in ("--dev", "--insecure"):
                if flag in args:
                    errors.append(f"{where}: runs with {flag}")
            env = env_map(c)
            for k, v in env.items():
                if k.endswith(("__DEV_MODE", "__INSECURE")) and str(v).lower() == "true":
                    errors.append(f"{where}: {k}=true")
                if SECRET_KEY.search(k.rsplit("__", 1)[-1]) and v is not None:
                    errors.append(f"{where}: {k} is a literal value (take it from a Secret)")
            if not any(e.get("secretRef", {}).get("name") in credential_secrets
                       for e in c.get("envFrom", [])):
                errors.append(f"{where}: no envFrom of the Secret centralino-credentials")
            for k in ("CENTRALINO_TLS__CERT_FILE", "CENTRALINO_TLS__KEY_FILE"):
                if not env.get(k):
                    errors.append(f"{where}: no {k} (public listener without TLS)")
                else:
                    mounted_file(w, c, env[k], certs_by_secret, errors, where)
            if overlay != "cluster":
                continue
            expect = f"spiffe://centralino/{role}/"
            for k in ("CENTRALINO_CLUSTER__TLS__CA_FILE", "CENTRALINO_CLUSTER__TLS__CERT_FILE",
                      "CENTRALINO_CLUSTER__TLS__KEY_FILE"):
                if not env.get(k):
                    errors.append(f"{where}: no {k} (internal plane without mTLS)")
                    continue
                cert = mounted_file(w, c, env[k], certs_by_secret, errors, where)
                uris = cert_uris(cert)
                if cert is not None and (not uris or not all(u.startswith(expect) for u in uris)):
                    errors.append(f"{where}: {k}: certificate URI SANs {uris} do not name role {role} ({expect}...)")
                # A per-pod identity names the node id the node registers with (its pod name).
                if cert is not None and "csi" in cert and (
                        uris != [expect + "${POD_NAME}"] or env.get("CENTRALINO_NODE__NODE_ID") != "$(POD_NAME)"):
                    errors.append(f"{where}: per-pod URI SAN {uris} is not {expect}${{POD_NAME}} "
                                  "with node_id $(POD_NAME)")
            for k in ("CENTRALINO_CLUSTER__ETCD_CA_FILE", "CENTRALINO_CLUSTER__ETCD_CERT_FILE",
                      "CENTRALINO_CLUSTER__ETCD_KEY_FILE"):
                if not env.get(k):
                    errors.append(f"{where}: no {k} (etcd without client certificates)")
                else:
                    mounted_file(w, c, env[k], certs_by_secret, errors, where)
            endpoints = env.get("CENTRALINO_CLUSTER__ETCD_ENDPOINTS") or ""
            urls = re.findall(r"[a-z]+://[^\s\",\]]+", endpoints)
            if not urls or any(not u.startswith("https://") for u in urls):
                errors.append(f"{where}: etcd endpoints are not all https: {endpoints}")
            if not env.get("CENTRALINO_NODE__INTERNAL_ADDR"):
                errors.append(f"{where}: no CENTRALINO_NODE__INTERNAL_ADDR")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            internal = env.get("CENTRALINO_NODE__INTERNAL_ADDR", "").rsplit(":", 1)[-1]
            if str(ports.get("internal")) != internal:
                errors.append(f"{where}: container port 'internal' {ports.get('internal')} is not internal_addr's port {internal}")
            advertise = env.get("CENTRALINO_NODE__ADVERTISE_INTERNAL_ADDR", "")
            if not advertise.endswith(f":{internal}"):
                errors.append(f"{where}: advertise_internal_addr {advertise!r} is not on port {internal}")
    if nodes == 0:
        errors.append("no centralino node in the render")


def check_env_references(r: Render, errors):
    """$(VAR) in an env value expands only when VAR is defined earlier in the list; in command
    and args, when VAR is in the list at all. Otherwise the text stays as is: three routers
    would all register as node "$(POD_NAME)"."""
    for w in r.workloads():
        for c in containers(w):
            where = f"{w['kind']}/{name(w)} container {c['name']}"
            seen = set()
            for e in c.get("env", []):
                for ref in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value") or ""):
                    if ref not in seen:
                        errors.append(f"{where}: env {e['name']} refers to $({ref}), not defined before it")
                seen.add(e["name"])
            for a in c.get("command", []) + c.get("args", []):
                for ref in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", a):
                    if ref not in seen:
                        errors.append(f"{where}: argument {a!r} refers to $({ref}), not in env")


def check_cert_chain(r: Render, errors):
    issuers = {(d["kind"], name(d)): d for d in r.kind("Issuer") + r.kind("ClusterIssuer")}
    certs_by_secret = {c["spec"]["secretName"]: c for c in r.kind("Certificate")}
    for c in r.kind("Certificate"):
        ref = c["spec"]["issuerRef"]
        key = (ref.get("kind", "Issuer"), ref["name"])
        where = f"Certificate/{name(c)}"
        if key not in issuers:
            errors.append(f"{where}: issuerRef {key[0]}/{key[1]} is not in the render")
        for u in c["spec"].get("uris", []):
            if not re.fullmatch(r"spiffe://centralino/(router|agent-node)/(\*|[a-z0-9]([a-z0-9-]*[a-z0-9])?)", u):
                errors.append(f"{where}: URI SAN {u} is not spiffe://centralino/<role>/<node-id>")
        if c["spec"].get("isCA") and c["spec"].get("privateKey", {}).get("rotationPolicy") != "Never":
            errors.append(f"{where}: a CA whose key rotates on renewal invalidates the certificates it signed")
    for w in r.workloads():
        for v in w["spec"]["template"]["spec"].get("volumes", []):
            attrs = v.get("csi", {}).get("volumeAttributes", {})
            if v.get("csi", {}).get("driver") == "csi.cert-manager.io":
                key = (attrs.get("csi.cert-manager.io/issuer-kind", "Issuer"),
                       attrs.get("csi.cert-manager.io/issuer-name"))
                if key not in issuers:
                    errors.append(f"{w['kind']}/{name(w)} volume {v['name']}: issuer {key[0]}/{key[1]} is not in the render")
                for u in attrs.get("csi.cert-manager.io/uri-sans", "").split(","):
                    if u and not re.fullmatch(r"spiffe://centralino/(router|agent-node)/\$\{POD_NAME\}", u):
                        errors.append(f"{w['kind']}/{name(w)} volume {v['name']}: URI SAN {u} is not spiffe://centralino/<role>/${{POD_NAME}}")
    for (kind, n), issuer in issuers.items():
        ca = issuer["spec"].get("ca")
        if ca:
            cert = certs_by_secret.get(ca["secretName"])
            if cert is None or not cert["spec"].get("isCA"):
                errors.append(f"{kind}/{n}: CA Secret {ca['secretName']} is not written by an isCA Certificate")


def check_etcd(r: Render, errors):
    found = False
    for w in r.workloads():
        for c in containers(w):
            if c["name"] != "etcd":
                continue
            found = True
            where = f"{w['kind']}/{name(w)} container etcd"
            args = {}
            for a in c.get("args", []):
                k, _, v = a.partition("=")
                args[k] = v
            for flag in ("--client-cert-auth", "--peer-client-cert-auth"):
                if args.get(flag, None) not in ("", "true"):
                    errors.append(f"{where}: no {flag}")
            for flag in ("--trusted-ca-file", "--cert-file", "--key-file", "--peer-trusted-ca-file",
                         "--peer-cert-file", "--peer-key-file"):
                if not args.get(flag):
                    errors.append(f"{where}: no {flag}")
            for flag in ("--listen-client-urls", "--advertise-client-urls", "--listen-peer-urls",
                         "--initial-advertise-peer-urls", "--initial-cluster"):
                urls = re.findall(r"[a-z]+://[^,]+", args.get(flag, ""))
                if not urls or any(not u.startswith("https://") for u in urls):
                    errors.append(f"{where}: {flag} is not https only: {args.get(flag)}")
            if args.get("--auto-tls") == "true" or args.get("--peer-auto-tls") == "true":
                errors.append(f"{where}: auto TLS (self-signed, unverified) is on")
            metrics = args.get("--listen-metrics-urls", "")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is None or str(port) not in (str(ports.get("metrics")), "metrics") \
                        or f":{ports.get('metrics')}" not in metrics:
                    errors.append(f"{where}: {probe} is not on the metrics listener ({metrics})")
    if not found:
        errors.append("no etcd container in the cluster overlay")


def check_services(r: Render, errors):
    named = {}
    for w in r.workloads():
        for c in containers(w):
            for p in c.get("ports", []):
                named[(name(w), p.get("name"))] = p["containerPort"]
    for s in r.kind("Service"):
        spec = s["spec"]
        if spec.get("clusterIP") == "None":
            continue
        for p in spec.get("ports", []):
            target = p.get("targetPort", p["port"])
            if target not in ("grpc", "metrics") and str(target) not in ("50051", "50061"):
                errors.append(f"Service/{name(s)}: exposes {target} on a cluster IP (only the public port may be)")


def workload_role(w):
    """router / agent-node for centralino nodes, else the app.kubernetes.io/name label."""
    labels = pod_labels(w)
    if labels.get("app.kubernetes.io/name") == "centralino":
        return labels.get("app.kubernetes.io/component")
    return labels.get("app.kubernetes.io/name")


def is_postgres(c):
    """A PostgreSQL server: the official image run by its entrypoint (a container of that image
    with a command of its own, such as the tls-reload sidecar, is a client)."""
    return re.match(r"^(docker\.io/)?(library/)?postgres[:@]", c.get("image", "")) is not None \
        and not c.get("command")


def secret_ref(c, var):
    """The (Secret name, key) a variable comes from, None for a literal or another source."""
    for e in c.get("env", []):
        if e["name"] == var:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            return (ref["name"], ref["key"]) if ref and "value" not in e else None
    return None


def volume_at(w, c, path):
    """The volume a path of a container is on (the longest mount path above it), and its kind:
    "pvc" (volumeClaimTemplates or persistentVolumeClaim), "emptyDir", another volume type,
    or (None, "root filesystem")."""
    pod = w["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
    best = None
    for m in c.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/") + "/"
        if (path.rstrip("/") + "/").startswith(mp) and (best is None or len(mp) > len(best[0])):
            best = (mp, m["name"])
    if best is None:
        return None, "root filesystem"
    v = volumes.get(best[1])
    if v is None:
        return best[1], "pvc" if best[1] in claims else "missing volume"
    if "persistentVolumeClaim" in v:
        return best[1], "pvc"
    kind = next((k for k in v if k != "name"), "?")
    return best[1], kind


def durable_paths(w, c):
    """What a container keeps that must outlive its pod: [(path, what)].

    - a router's data_dir, when it holds the embedded store (--standalone) or the archive (a
      cluster router without the PostgreSQL record from a Secret); in cluster mode with
      [record] postgres_url the data_dir is scratch;
    - nothing of an agent-node (it writes nothing durable: logins are etcd claims,
      conversations the routers');
    - etcd's --data-dir; PostgreSQL's PGDATA.
    """
    role = workload_role(w)
    env = env_map(c)
    args = c.get("command", []) + c.get("args", [])
    out = []
    if role == "router" and pod_labels(w).get("app.kubernetes.io/name") == "centralino":
        data = env.get("CENTRALINO_NODE__DATA_DIR") or "data/centralino"
        if "--standalone" in args:
            out.append((data, "the router's data_dir (the embedded store)"))
        elif secret_ref(c, PG_URL_ENV) is None:
            out.append((data, "the router's data_dir (the transcript archive: no PostgreSQL record)"))
    for a in args:
        if a.startswith("--data-dir="):
            out.append((a.partition("=")[2], "etcd's --data-dir"))
    if c.get("name") == "etcd" and not any(a.startswith("--data-dir=") for a in args):
        out.append(("<name>.etcd", "etcd's default data dir"))
    if is_postgres(c):
        out.append((env.get("PGDATA") or "/var/lib/postgresql/data", "PostgreSQL's PGDATA"))
    return out


def check_durable_volumes(r: Render, errors):
    """Nothing durable on an emptyDir (or the container's own filesystem): it is lost on every
    rollout, eviction and reschedule. Durable paths must be on a PersistentVolumeClaim."""
    for w in r.workloads():
        for c in containers(w):
            where = f"{w['kind']}/{name(w)} container {c['name']}"
            for path, what in durable_paths(w, c):
                if not path.startswith("/"):
                    errors.append(f"{where}: {what} {path} is a relative path (set it on a persistent volume)")
                    continue
                volume, kind = volume_at(w, c, path)
                if kind != "pvc":
                    errors.append(f"{where}: {what} {path} is on {kind}"
                                  f"{f' volume {volume}' if volume else ''}, not a persistent volume claim")


def check_postgres(r: Render, overlay, errors):
    """PostgreSQL, the cluster's system of record: its password and the routers' DSN only from
    Secrets (never a literal, an argument or a ConfigMap), placeholders only in the render, TLS
    with verify-full, and, self-contained, a server that takes TLS + SCRAM connections only."""
    secrets = {name(s): secret_values(s) for s in r.kind("Secret")}
    configmaps = {name(cm): cm.get("data") or {} for cm in r.kind("ConfigMap")}
    # Everywhere: the password and DSN variables from a Secret, no DSN with a password in a
    # literal value or an argument.
    for w in r.workloads():
        for c in containers(w):
            where = f"{w['kind']}/{name(w)} container {c['name']}"
            for e in c.get("env", []):
                if e["name"] in PG_SECRET_ENV and not (e.get("valueFrom") or {}).get("secretKeyRef") \
                        and not e["name"].endswith("_FILE"):
                    errors.append(f"{where}: {e['name']} is not from a Secret (secretKeyRef)")
                if DSN_WITH_PASSWORD.search(e.get("value") or ""):
                    errors.append(f"{where}: env {e['name']} holds a PostgreSQL DSN with a password")
            for a in c.get("command", []) + c.get("args", []):
                if DSN_WITH_PASSWORD.search(a) or re.search(r"(^|\s)password\s*=", a):
                    errors.append(f"{where}: argument {a!r} holds a PostgreSQL password")
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef and any(DSN_WITH_PASSWORD.search(str(v)) or k in PG_SECRET_ENV
                                                for k, v in configmaps.get(ef["configMapRef"]["name"], {}).items()):
                    errors.append(f"{where}: envFrom ConfigMap {ef['configMapRef']['name']} carries a PostgreSQL credential")
    pg_secrets = {n: v for n, v in secrets.items() if is_generated(n, PG_SECRET)}
    for n, values in pg_secrets.items():
        for key, value in values.items():
            if key not in ("password", "postgres-url"):
                errors.append(f"Secret/{n} {key}: not a key of the PostgreSQL Secret (password, postgres-url)")
            elif key == "password" and not value.startswith(PLACEHOLDER):
                errors.append(f"Secret/{n} password: value is not a {PLACEHOLDER}... placeholder")
            elif key == "postgres-url" and PLACEHOLDER not in value:
                errors.append(f"Secret/{n} postgres-url: the DSN holds no {PLACEHOLDER}... placeholder")
    if overlay != "cluster":
        return

    servers = [(w, c) for w in r.workloads() for c in containers(w) if is_postgres(c)]
    routers = [(w, c) for w in r.workloads() if workload_role(w) == "router"
               and pod_labels(w).get("app.kubernetes.io/name") == "centralino" for c in containers(w)]
    for w, c in routers:
        where = f"{w['kind']}/{name(w)} container {c['name']}"
        ref = secret_ref(c, PG_URL_ENV)
        if ref is None:
            errors.append(f"{where}: no {PG_URL_ENV} from a Secret (cluster mode needs PostgreSQL as the record)")
            continue
        dsn = secrets.get(ref[0], {}).get(ref[1])
        if dsn is None:
            errors.append(f"{where}: {PG_URL_ENV} refers to Secret {ref[0]} key {ref[1]}, not in the render")
            continue
        m = re.match(r"^postgres(ql)?://(?:([^:@/]*)(?::([^@/]*))?@)?([^:/?]+)(?::(\d+))?/([^?]*)(?:\?(.*))?$", dsn)
        if not m:
            errors.append(f"{where}: the DSN in {ref[0]}/{ref[1]} is not a postgres:// URL")
            continue
        user, password, host, db = m.group(2), m.group(3), m.group(4), m.group(6)
        params = dict(p.partition("=")[::2] for p in (m.group(7) or "").split("&") if p)
        if params.get("sslmode") != "verify-full":
            errors.append(f"{where}: the DSN's sslmode is {params.get('sslmode')!r}, not verify-full")
        root = params.get("sslrootcert")
        if not root:
            errors.append(f"{where}: the DSN names no sslrootcert (the CA the server is verified against)")
        else:
            volume, kind = volume_at(w, c, root)
            vol = next((v for v in w["spec"]["template"]["spec"].get("volumes", []) if v["name"] == volume), {})
            if kind not in ("secret", "configMap"):
                errors.append(f"{where}: sslrootcert {root} is on {kind}, not a mounted Secret or ConfigMap")
            elif kind == "secret" and [i.get("key") for i in vol["secret"].get("items", [])] != ["ca.crt"]:
                errors.append(f"{where}: volume {volume} mounts Secret {vol['secret']['secretName']} beyond its "
                              "ca.crt (a router must not get the database server's key)")
        if servers:
            # Self-contained: the DSN must name this server, its user, database and password,
            # and a DNS name of its certificate (verify-full checks it).
            sw, sc = servers[0]
            senv = env_map(sc)
            pw_ref = secret_ref(sc, "POSTGRES_PASSWORD")
            server_pw = secrets.get(pw_ref[0], {}).get(pw_ref[1]) if pw_ref else None
            if user != senv.get("POSTGRES_USER") or db != senv.get("POSTGRES_DB"):
                errors.append(f"{where}: the DSN's user/database {user}/{db} are not the server's "
                              f"{senv.get('POSTGRES_USER')}/{senv.get('POSTGRES_DB')}")
            if server_pw is not None and password != server_pw:
                errors.append(f"{where}: the DSN's password is not the server's (Secret {pw_ref[0]} key {pw_ref[1]})")
            names = {d for cert in r.kind("Certificate") for d in cert["spec"].get("dnsNames", [])
                     if any(v.get("secret", {}).get("secretName") == cert["spec"]["secretName"]
                            for v in sw["spec"]["template"]["spec"].get("volumes", []))}
            if host not in names:
                errors.append(f"{where}: the DSN's host {host} is not a DNS name of the server's certificate {sorted(names)}")
    for w, c in servers:
        where = f"{w['kind']}/{name(w)} container {c['name']}"
        env = env_map(c)
        if not any(e["name"] in ("POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE") for e in c.get("env", [])):
            errors.append(f"{where}: no POSTGRES_PASSWORD (from a Secret)")
        if str(env.get("POSTGRES_HOST_AUTH_METHOD", "")).lower() in ("trust", "password", "md5"):
            errors.append(f"{where}: POSTGRES_HOST_AUTH_METHOD={env['POSTGRES_HOST_AUTH_METHOD']}")
        if not re.search(r"postgres:\d+(\.\d+)*(-[a-z0-9]+)?(@sha256:[0-9a-f]{64})?$", c["image"]):
            errors.append(f"{where}: image {c['image']} is not pinned to a version")
        settings = {}
        args = c.get("args", [])
        for i, a in enumerate(args):
            if a == "-c" and i + 1 < len(args):
                k, _, v = args[i + 1].partition("=")
                settings[k] = v
        if settings.get("ssl") != "on" or not settings.get("ssl_cert_file") or not settings.get("ssl_key_file"):
            errors.append(f"{where}: TLS is not on (-c ssl=on, ssl_cert_file, ssl_key_file)")
        for k in ("ssl_cert_file", "ssl_key_file"):
            if settings.get(k):
                volume, kind = volume_at(w, c, settings[k])
                if kind != "secret":
                    errors.append(f"{where}: {k} is on {kind}, not a Secret cert-manager writes")
        hba = settings.get("hba_file")
        if not hba:
            errors.append(f"{where}: no hba_file (the image's default admits every address without TLS)")
            continue
        volume, kind = volume_at(w, c, hba)
        vol = next((v for v in w["spec"]["template"]["spec"].get("volumes", []) if v["name"] == volume), {})
        text = configmaps.get(vol.get("configMap", {}).get("name"), {}).get(hba.rsplit("/", 1)[-1]) \
            if kind == "configMap" else None
        if text is None:
            errors.append(f"{where}: hba_file {hba} is not a file of a mounted ConfigMap")
            continue
        for line in text.splitlines():
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if fields[0] in ("host", "hostnossl", "hostgssenc", "hostnogssenc"):
                errors.append(f"{where}: pg_hba line {line.strip()!r} admits connections without TLS")
            elif fields[0] == "hostssl" and fields[-1] not in ("scram-sha-256", "cert"):
                errors.append(f"{where}: pg_hba line {line.strip()!r} does not authenticate with SCRAM or a certificate")


# --- NetworkPolicy evaluation ------------------------------------------------------------
class Peer:
    """A source or destination of a connection: a pod (labels, namespace) or an address."""

    def __init__(self, label, labels=None, namespace="app", ns_labels=None, ip=None, ports=None):
        self.label, self.labels, self.namespace = label, labels or {}, namespace
        self.ns_labels = ns_labels or {"kubernetes.io/metadata.name": namespace}
        self.ip, self.ports = ip, ports or {}


def _peer_matches(rule_peers, peer: Peer, policy_ns="app") -> bool:
    if rule_peers is None:
        return True
    for p in rule_peers:
        if "ipBlock" in p:
            if peer.ip is not None and _in_block(peer.ip, p["ipBlock"]):
                return True
            continue
        if peer.ip is not None:
            continue  # pod/namespace selectors match pods only
        ns_sel, pod_sel = p.get("namespaceSelector"), p.get("podSelector")
        if ns_sel is None and peer.namespace != policy_ns:
            continue
        if ns_sel is not None and not matches(ns_sel, peer.ns_labels):
            continue
        if matches(pod_sel, peer.labels):
            return True
    return False


def _in_block(ip, block):
    import ipaddress
    addr = ipaddress.ip_address(ip)
    if addr not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(addr in ipaddress.ip_network(e) for e in block.get("except", []))


def _port_matches(rule_ports, dest: Peer, port_name, proto="TCP") -> bool:
    if not rule_ports:
        return True
    number = dest.ports.get(port_name, port_name)
    for p in rule_ports:
        if p.get("protocol", "TCP") != proto:
            continue
        if "port" not in p:
            return True
        if p["port"] == port_name or p["port"] == number:
            return True
        if isinstance(p["port"], int) and isinstance(number, int) and "endPort" in p \
                and p["port"] <= number <= p["endPort"]:
            return True
    return False


def allowed(policies, src: Peer, dst: Peer, port_name, proto="TCP", egress_too=True) -> bool:
    def selecting(pod: Peer, direction):
        if pod.ip is not None or pod.namespace != "app":
            return None  # outside the namespace: not governed by these policies
        return [p for p in policies if matches(p["spec"].get("podSelector"), pod.labels)
                and direction in p["spec"].get("policyTypes", ["Ingress"])]

    egress = selecting(src, "Egress") if egress_too else None
    if egress is not None and egress:
        if not any(_peer_matches(rule.get("to"), dst) and _port_matches(rule.get("ports"), dst, port_name, proto)
                   for p in egress for rule in p["spec"].get("egress", [])):
            return False
    ingress = selecting(dst, "Ingress")
    if ingress is not None and ingress:
        if not any(_peer_matches(rule.get("from"), src) and _port_matches(rule.get("ports"), dst, port_name, proto)
                   for p in ingress for rule in p["spec"].get("ingress", [])):
            return False
    return True


def check_network_policies(r: Render, overlay, errors):
    policies = r.kind("NetworkPolicy")
    if not any(p["spec"].get("podSelector") in ({}, None)
               and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies):
        errors.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    pods = {}
    for w in r.workloads():
        labels = pod_labels(w)
        ports = {p.get("name"): p["containerPort"] for c in containers(w) for p in c.get("ports", [])}
        pods[workload_role(w)] = Peer(workload_role(w), labels, ports=ports)
    centralino = {"router", "agent-node"}
    outsiders = {
        "other pod": Peer("other pod", {"app": "other"}),
        "pod in another namespace": Peer("pod in another namespace", {"app.kubernetes.io/name": "centralino",
                                         "app.kubernetes.io/component": "router"}, namespace="other"),
        "prometheus": Peer("prometheus", {"app.kubernetes.io/name": "prometheus"}, namespace="monitoring"),
        "internet": Peer("internet", ip="203.0.113.7"),
    }
    sources = {**pods, **outsiders}
    dns = Peer("kube-dns", {"k8s-app": "kube-dns"}, namespace="kube-system", ports={"dns": 53})

    for dst_role, dst in pods.items():
        for port_name in dst.ports:
            for src_role, src in sources.items():
                got = allowed(policies, src, dst, port_name)
                if port_name == "grpc":
                    # Open to every source outside the namespace (clients, load balancers,
                    # ingress controllers); pods of the namespace have no egress to it.
                    want = src.ip is not None or src.namespace != "app"
                elif port_name == "internal" and dst_role == "agent-node":
                    want = src_role == "router"  # AgentNodeInternal: called by routers only
                elif port_name == "internal":
                    want = src_role in centralino  # RouterInternal: agent-nodes and routers
                elif port_name == "metrics":
                    want = src_role == "prometheus"
                elif dst_role == "etcd" and port_name == "client":
                    want = src_role in centralino
                elif dst_role == "etcd" and port_name == "peer":
                    want = src_role == "etcd"
                elif dst_role == "postgresql" and port_name == "postgresql":
                    want = src_role == "router"  # the record: routers only, never agent-nodes
                else:
                    want = False
                if got != want:
                    errors.append(f"NetworkPolicy: {src_role} -> {dst_role}:{port_name} is "
                                  f"{'allowed' if got else 'denied'}, must be {'allowed' if want else 'denied'}")
                # The destination's ingress rules must hold on their own too, whatever the
                # sources' egress rules (a pod added later may get an egress allow).
                alone = allowed(policies, src, dst, port_name, egress_too=False)
                want_alone = True if port_name == "grpc" else want
                if got == want and alone != want_alone:
                    errors.append(f"NetworkPolicy: ingress of {dst_role}:{port_name} "
                                  f"{'admits' if alone else 'refuses'} {src_role}")
        if not allowed(policies, dst, dns, 53, "UDP") or not allowed(policies, dst, dns, 53, "TCP"):
            errors.append(f"NetworkPolicy: {dst_role} cannot resolve names (DNS to kube-dns)")
        if allowed(policies, dst, outsiders["internet"], 443) and dst_role in ("etcd", "postgresql"):
            errors.append(f"NetworkPolicy: {dst_role} reaches the internet")
    if overlay == "cluster" and not any("internal" in p.ports for p in pods.values()):
        errors.append("no container port named 'internal' in the cluster overlay")
    expected = {"router"} | ({"agent-node", "etcd"} if overlay == "cluster" else set())
    if overlay == "cluster" and "postgresql" in pods:
        expected.add("postgresql")  # self-contained (components/postgresql)
    elif overlay == "cluster":
        check_external_postgres_egress(policies, pods, outsiders, errors)
    if set(pods) != expected:
        errors.append(f"workloads {sorted(pods)}, expected {sorted(expected)} (update the matrix)")


def check_external_postgres_egress(policies, pods, outsiders, errors):
    """A managed PostgreSQL (components/postgresql-external): the routers, and only they, may
    dial its addresses (an ipBlock) on 5432, and not the whole internet."""
    import ipaddress

    db_port = {"postgresql": 5432}
    blocks = [peer["ipBlock"] for p in policies if "Egress" in p["spec"].get("policyTypes", [])
              for rule in p["spec"].get("egress", [])
              if rule.get("ports") and _port_matches(rule["ports"], Peer("db", ports=db_port), "postgresql")
              for peer in rule.get("to") or [] if "ipBlock" in peer]
    if not blocks:
        errors.append("NetworkPolicy: no egress to an external PostgreSQL (an ipBlock on port 5432) "
                      "and no PostgreSQL in the render")
        return
    for block in blocks:
        net = ipaddress.ip_network(block["cidr"])
        db = Peer("external postgresql", ip=str(next(net.hosts(), net.network_address)), ports=db_port)
        for role, src in pods.items():
            if allowed(policies, src, db, "postgresql") != (role == "router"):
                errors.append(f"NetworkPolicy: {role} -> external PostgreSQL {block['cidr']}:5432 is "
                              f"{'allowed' if role != 'router' else 'denied'}, must be "
                              f"{'denied' if role != 'router' else 'allowed'}")
    if "router" in pods and allowed(policies, pods["router"], Peer("internet", ip="203.0.113.7", ports=db_port),
                                    "postgresql"):
        errors.append("NetworkPolicy: routers reach port 5432 anywhere on the internet (narrow the ipBlock "
                      "to the database's addresses)")


def check(path, overlay) -> list[str]:
    import yaml  # only the checks need PyYAML (the virtualenv has it); rendering runs on bare python3

    with open(path) as f:
        r = Render([d for d in yaml.safe_load_all(f) if d])
    errors: list[str] = []
    check_configmaps(r, errors)
    check_secrets(r, errors)
    check_nodes(r, overlay, errors)
    check_env_references(r, errors)
    check_cert_chain(r, errors)
    check_services(r, errors)
    check_network_policies(r, overlay, errors)
    check_durable_volumes(r, errors)
    check_postgres(r, overlay, errors)
    if overlay == "cluster":
        check_etcd(r, errors)
    return errors


# --- self-test ---------------------------------------------------------------------------
def _find(docs, kind, prefix):
    return next(d for d in docs if d["kind"] == kind and name(d).startswith(prefix))


def _container(docs, workload, cname):
    w = _find(docs, "StatefulSet", workload)
    return next(c for c in w["spec"]["template"]["spec"]["containers"] if c["name"] == cname)


def _set_arg(c, flag, value=None):
    c["args"] = [a for a in c["args"] if a.partition("=")[0] != flag]
    if value is not None:
        c["args"].append(value)


def _env(c, var):
    return next(e for e in c["env"] if e["name"] == var)


def _volume(w, vname):
    return next(v for v in w["spec"]["template"]["spec"]["volumes"] if v["name"] == vname)


def _to_empty_dir(w, vname):
    """The claim template vname becomes an emptyDir volume of the same name."""
    w["spec"]["volumeClaimTemplates"] = [t for t in w["spec"].get("volumeClaimTemplates", [])
                                         if t["metadata"]["name"] != vname]
    volumes = [v for v in w["spec"]["template"]["spec"].get("volumes", []) if v["name"] != vname]
    w["spec"]["template"]["spec"]["volumes"] = volumes + [{"name": vname, "emptyDir": {}}]


def _with_dsn(text):
    """The configuration with a literal postgres_url under [record] (added when absent)."""
    line = 'postgres_url = "postgres://centralino:pw@db:5432/centralino"\n'
    if re.search(r"^\[record\]\s*$", text, re.M):
        return re.sub(r"^\[record\]\s*$\n?", "[record]\n" + line, text, count=1, flags=re.M)
    return text + "\n[record]\n" + line


def _edit_dsn(docs, edit):
    secret = _find(docs, "Secret", PG_SECRET)
    url = base64.b64decode(secret["data"]["postgres-url"]).decode()
    secret["data"]["postgres-url"] = base64.b64encode(edit(url).encode()).decode()


def _edit_hba(docs, line):
    cm = _find(docs, "ConfigMap", "centralino-postgres-hba")
    cm["data"]["pg_hba.conf"] += line + "\n"


def _internal_policy(docs):
    return _find(docs, "NetworkPolicy", "centralino-router-internal")["spec"]


MUTATIONS = {
    "an agent's password hash in the ConfigMap": lambda d: _find(d, "ConfigMap", "centralino-config")["data"].update(
        {"centralino.toml": _find(d, "ConfigMap", "centralino-config")["data"]["centralino.toml"]
         .replace('id = "giulia"', 'id = "giulia"\npassword_hash = "x"')}),
    "a real value in the credentials Secret": lambda d: _find(d, "Secret", "centralino-credentials")["data"].update(
        {"CENTRALINO_IDENTITY__SHOP_SECRET": base64.b64encode(b"00ff00ff").decode()}),
    "a Secret key past the agents": lambda d: _find(d, "Secret", "centralino-credentials")["data"].update(
        {"CENTRALINO_AGENTS__99__PASSWORD_HASH": base64.b64encode(b"CHANGE-ME-x").decode()}),
    "etcd without --client-cert-auth": lambda d: _set_arg(_container(d, "centralino-etcd", "etcd"), "--client-cert-auth"),
    "etcd without --peer-client-cert-auth": lambda d: _set_arg(_container(d, "centralino-etcd", "etcd"), "--peer-client-cert-auth"),
    "etcd clients over http": lambda d: _set_arg(_container(d, "centralino-etcd", "etcd"), "--listen-client-urls",
                                                 "--listen-client-urls=http://0.0.0.0:2379"),
    "etcd probed on the client port": lambda d: _container(d, "centralino-etcd", "etcd")["readinessProbe"]["httpGet"]
        .update({"port": 2379}),
    "the node id expanded before POD_NAME is defined": lambda d: _container(d, "centralino-router", "router").update(
        {"env": sorted(_container(d, "centralino-router", "router")["env"], key=lambda e: e["name"].startswith("POD_"))}),
    "a router with --insecure": lambda d: _container(d, "centralino-router", "router")["args"].append("--insecure"),
    "a router in dev mode": lambda d: _container(d, "centralino-router", "router")["env"].append(
        {"name": "CENTRALINO_NODE__DEV_MODE", "value": "true"}),
    "a literal secret in a pod's env": lambda d: _container(d, "centralino-router", "router")["env"].append(
        {"name": "CENTRALINO_IDENTITY__SHOP_SECRET", "value": "abc"}),
    "etcd endpoints over http": lambda d: next(e for e in _container(d, "centralino-router", "router")["env"]
                                              if e["name"] == "CENTRALINO_CLUSTER__ETCD_ENDPOINTS").update(
        {"value": '["http://centralino-etcd-0.centralino-etcd:2379"]'}),
    "no internal mTLS key file": lambda d: _container(d, "centralino-router", "router").update(
        {"env": [e for e in _container(d, "centralino-router", "router")["env"]
                 if e["name"] != "CENTRALINO_CLUSTER__TLS__KEY_FILE"]}),
    "a router certificate naming agent-nodes": lambda d: _find(d, "Certificate", "centralino-router-internal")["spec"]
        .update({"uris": ["spiffe://centralino/agent-node/*"]}),
    "certificates mounted with subPath": lambda d: next(m for m in _container(d, "centralino-router", "router")["volumeMounts"]
                                                        if m["name"] == "internal-tls").update({"subPath": "tls.crt"}),
    "an issuerRef to a missing Issuer": lambda d: _find(d, "Certificate", "centralino-etcd-server")["spec"]["issuerRef"]
        .update({"name": "nope"}),
    "a CA whose key rotates": lambda d: _find(d, "Certificate", "centralino-ca")["spec"]["privateKey"]
        .update({"rotationPolicy": "Always"}),
    "the internal port on the public Service": lambda d: _find(d, "Service", "centralino-clients")["spec"]["ports"].append(
        {"name": "internal", "port": 7001, "targetPort": "internal"}),
    "no default-deny": lambda d: d.remove(_find(d, "NetworkPolicy", "centralino-default-deny")),
    "internal ports open to the namespace": lambda d: _internal_policy(d)["ingress"][0].update({"from": [{"podSelector": {}}]}),
    "internal ports open to everyone": lambda d: _internal_policy(d)["ingress"][0].pop("from"),
    "internal ports from another namespace": lambda d: _internal_policy(d)["ingress"][0]["from"][0].update(
        {"namespaceSelector": {}}),
    "agent-nodes calling agent-nodes": lambda d: _find(d, "NetworkPolicy", "centralino-agent-node-internal")["spec"]
        ["ingress"][0]["from"][0]["podSelector"]["matchLabels"].pop("app.kubernetes.io/component"),
    "etcd's peer port from routers": lambda d: _find(d, "NetworkPolicy", "centralino-etcd")["spec"]["ingress"][1]["from"]
        .append({"podSelector": {"matchLabels": {"app.kubernetes.io/component": "router"}}}),
    "etcd's client port from any pod": lambda d: _find(d, "NetworkPolicy", "centralino-etcd")["spec"]["ingress"][0]
        .update({"from": [{"podSelector": {}}]}),
    "metrics from anywhere": lambda d: _find(d, "NetworkPolicy", "centralino-allow-metrics")["spec"]["ingress"][0].pop("from"),
    "no public port": lambda d: d.remove(_find(d, "NetworkPolicy", "centralino-allow-public")),
    "no DNS": lambda d: d.remove(_find(d, "NetworkPolicy", "centralino-allow-dns")),
    # PostgreSQL, the record (components/postgresql).
    "routers without the PostgreSQL record": lambda d: _container(d, "centralino-router", "router").update(
        {"env": [e for e in _container(d, "centralino-router", "router")["env"] if e["name"] != PG_URL_ENV]}),
    "the routers' DSN as a literal value": lambda d: _env(_container(d, "centralino-router", "router"), PG_URL_ENV).update(
        {"value": "postgres://centralino:pw@centralino-postgres:5432/centralino?sslmode=verify-full"}) or
        _env(_container(d, "centralino-router", "router"), PG_URL_ENV).pop("valueFrom"),
    "the PostgreSQL password as a literal value": lambda d: _env(_container(d, "centralino-postgres", "postgresql"),
                                                               "POSTGRES_PASSWORD").update({"value": "pw"}) or
        _env(_container(d, "centralino-postgres", "postgresql"), "POSTGRES_PASSWORD").pop("valueFrom"),
    "a real password in the PostgreSQL Secret": lambda d: _find(d, "Secret", PG_SECRET)["data"].update(
        {"password": base64.b64encode(b"s3cret-password").decode()}),
    "the DSN's password not the server's": lambda d: _find(d, "Secret", PG_SECRET)["data"].update(
        {"password": base64.b64encode(b"CHANGE-ME-another-password").decode()}),
    "a DSN without verify-full": lambda d: _edit_dsn(d, lambda u: u.replace("sslmode=verify-full", "sslmode=require")),
    "a DSN naming a host the certificate does not": lambda d: _edit_dsn(
        d, lambda u: u.replace("@centralino-postgres:", "@centralino-postgres.default.svc:")),
    "a DSN in the ConfigMap": lambda d: _find(d, "ConfigMap", "centralino-config")["data"].update(
        {"centralino.toml": _with_dsn(_find(d, "ConfigMap", "centralino-config")["data"]["centralino.toml"])}),
    "a router mounting the PostgreSQL server's key": lambda d: _volume(
        _find(d, "StatefulSet", "centralino-router"), "postgres-ca")["secret"].pop("items"),
    "PostgreSQL's data on an emptyDir": lambda d: _to_empty_dir(_find(d, "StatefulSet", "centralino-postgres"), "data"),
    "etcd's data on an emptyDir": lambda d: _to_empty_dir(_find(d, "StatefulSet", "centralino-etcd"), "data"),
    "PostgreSQL without TLS": lambda d: _container(d, "centralino-postgres", "postgresql").update(
        {"args": [a for a in _container(d, "centralino-postgres", "postgresql")["args"] if a != "ssl=on"][1:]}),
    "pg_hba admitting connections without TLS": lambda d: _edit_hba(d, "host all all 0.0.0.0/0 scram-sha-256"),
    "pg_hba trusting the network": lambda d: _edit_hba(d, "hostssl all all 10.0.0.0/8 trust"),
    "an unpinned PostgreSQL image": lambda d: _container(d, "centralino-postgres", "postgresql").update(
        {"image": "postgres:latest"}),
    "5432 from agent-nodes": lambda d: _find(d, "NetworkPolicy", "centralino-postgres")["spec"]["ingress"][0]["from"][0]
        ["podSelector"]["matchLabels"].pop("app.kubernetes.io/component"),
    "5432 from any pod": lambda d: _find(d, "NetworkPolicy", "centralino-postgres")["spec"]["ingress"][0].update(
        {"from": [{"podSelector": {}}]}),
    "PostgreSQL reaching the internet": lambda d: _find(d, "NetworkPolicy", "centralino-postgres")["spec"].update(
        {"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
}

# Broken variants of the standalone render.
STANDALONE_MUTATIONS = {
    "the embedded store on an emptyDir": lambda d: _to_empty_dir(_find(d, "StatefulSet", "centralino-router"), "data"),
    "the embedded store on the root filesystem": lambda d: _env(_container(d, "centralino-router", "router"),
                                                              "CENTRALINO_NODE__DATA_DIR").update({"value": "/data"}),
}

# Broken variants of the cluster render with a managed PostgreSQL (components/postgresql-external).
EXTERNAL_MUTATIONS = {
    "routers without the PostgreSQL record": MUTATIONS["routers without the PostgreSQL record"],
    "the routers' DSN as a literal value": MUTATIONS["the routers' DSN as a literal value"],
    "an external DSN without verify-full": MUTATIONS["a DSN without verify-full"],
    "an external DSN without sslrootcert": lambda d: _edit_dsn(d, lambda u: u.split("&sslrootcert=")[0]),
    "an external DSN without a placeholder": lambda d: _edit_dsn(d, lambda u: u.replace("CHANGE-ME-", "")),
    "no egress to the external PostgreSQL": lambda d: d.remove(_find(d, "NetworkPolicy", "centralino-routers-to-postgres")),
    "the external PostgreSQL egress open to the internet": lambda d: _find(
        d, "NetworkPolicy", "centralino-routers-to-postgres")["spec"]["egress"][0]["to"][0]["ipBlock"].update(
        {"cidr": "0.0.0.0/0"}),
    "agent-nodes reaching the external PostgreSQL": lambda d: _find(
        d, "NetworkPolicy", "centralino-routers-to-postgres")["spec"]["podSelector"]["matchLabels"].pop(
        "app.kubernetes.io/component"),
    "the routers' DSN from a ConfigMap": lambda d: _env(
        _container(d, "centralino-router", "router"), PG_URL_ENV).update(
        {"valueFrom": {"configMapKeyRef": {"name": "centralino-postgres-ca", "key": "ca.crt"}}}),
}


def selftest(cluster, standalone, external) -> int:
    """Applies each mutation to a copy of a good render (cluster, standalone, cluster with a
    managed PostgreSQL) and expects the checks to fail on it (and to pass on the unmutated
    render): the checks can fail."""
    import copy
    import tempfile

    import yaml

    failed = 0
    for label, path, overlay, mutations in (("cluster", cluster, "cluster", MUTATIONS),
                                            ("standalone", standalone, "standalone", STANDALONE_MUTATIONS),
                                            ("cluster-external-postgresql", external, "cluster", EXTERNAL_MUTATIONS)):
        with open(path) as f:
            good = [d for d in yaml.safe_load_all(f) if d]
        if check(path, overlay):
            print(f"selftest: the unmutated {label} render fails the checks", file=sys.stderr)
            failed += 1
            continue
        missed = []
        for what, mutate in mutations.items():
            docs = copy.deepcopy(good)
            mutate(docs)
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                yaml.safe_dump_all(docs, f)
                f.flush()
                if not check(f.name, overlay):
                    missed.append(what)
        for what in missed:
            print(f"selftest: not caught in the {label} render: {what}", file=sys.stderr)
        if missed:
            failed += 1
        else:
            print(f"selftest: all {len(mutations)} mutations of the {label} render are caught")
    return 1 if failed else 0


def main(argv):
    if len(argv) == 2 and argv[0] == "render-config":
        sys.stdout.write(split_example(open(argv[1]).read())[0])
    elif len(argv) == 2 and argv[0] == "render-credentials":
        sys.stdout.write(render_credentials(split_example(open(argv[1]).read())[1]))
    elif len(argv) == 4 and argv[0] == "selftest":
        return selftest(argv[1], argv[2], argv[3])
    elif len(argv) == 3 and argv[0] == "check":
        errors = check(argv[1], argv[2])
        for e in errors:
            print("security: " + e, file=sys.stderr)
        if errors:
            return 1
        print(f"security checks passed for overlay {argv[2]}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
