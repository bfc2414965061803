#!/usr/bin/env python3
"""The browser API against its own OpenAPI document, from outside.

Usage: check_openapi.py [--bin-dir target/release] [--max-examples N] [--keep]

Starts a `router --standalone` (no dev mode: an argon2id agent hash and hashed operator
tokens made with `centralino hash-password` / `centralino new-token`, as attack.py does),
fetches `GET /v1/openapi.json` and:

1. validates it as an OpenAPI 3.1 document (openapi-spec-validator);
2. checks the Server-Sent Events routes by hand (schemathesis cannot test streams): a bad
   operator token on every admin stream and a wrong conversation token on the customer's
   event stream are refused with a JSON Error body; with the right tokens the first event's
   `data:` is a valid ConversationEvent / Snapshot;
3. walks a desk session by hand (a refused login, a login, a command, the first event, the
   logout), each answer against the document (--no-desk leaves it out);
4. runs schemathesis over every customer and admin operation but the streams (an operator
   token in `Authorization`), with not_a_server_error, status_code_conformance,
   content_type_conformance and response_schema_conformance, a bounded number of examples
   each.

Its Python dependencies (scripts/requirements-openapi.txt, pinned) live in a virtualenv,
target/openapi-venv, which it makes when missing or stale and then re-runs itself in.
Exits non-zero on any failure.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "scripts" / "requirements-openapi.txt"
VENV = ROOT / "target" / "openapi-venv"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")
STREAMS = r"/(events|watch|stream)$"


# ---------------------------------------------------------------------------------------------
# The virtualenv
# ---------------------------------------------------------------------------------------------

def venv_python():
    return VENV / "bin" / "python"


def ensure_venv():
    """Re-runs this script in target/openapi-venv, made from the pinned requirements when
    missing or stale (Debian's system Python refuses pip installs, PEP 668)."""
    stamp = VENV / REQUIREMENTS.name
    in_venv = Path(sys.prefix).resolve() == VENV.resolve()
    fresh = stamp.exists() and stamp.read_bytes() == REQUIREMENTS.read_bytes()
    if in_venv and fresh:
        return
    if not fresh:
        shutil.rmtree(VENV, ignore_errors=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(VENV)],
                              capture_output=True, text=True)
        if made.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            # Debian ships ensurepip separately.
            if subprocess.run(["apt-get", "update"]).returncode != 0 or subprocess.run(
                    ["apt-get", "install", "-y", "python3-venv"]).returncode != 0:
                sys.exit("check_openapi.py: cannot make a virtualenv (python3 -m venv: "
                         f"{made.stderr.strip()}) and cannot install python3-venv")
            if subprocess.run([sys.executable, "-m", "venv", str(VENV)]).returncode != 0:
                sys.exit("check_openapi.py: python3 -m venv failed even with python3-venv")
        pip = subprocess.run([str(venv_python()), "-m", "pip", "install", "--quiet",
                              "--disable-pip-version-check", "-r", str(REQUIREMENTS)])
        if pip.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            sys.exit(f"check_openapi.py: pip could not install {REQUIREMENTS}")
        shutil.copyfile(REQUIREMENTS, stamp)
    os.execv(str(venv_python()), [str(venv_python()), __file__, *sys.argv[1:]])


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

class Failed(Exception):
    """A check failed."""


def check(condition, message):
    if not condition:
        raise Failed(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(binary, args, stdin=""):
    done = subprocess.run([str(binary), *args], input=stdin, capture_output=True, text=True,
                          timeout=60)
    check(done.returncode == 0, f"{binary.name} {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def new_token(centralino):
    """(token, hash) from `centralino new-token` (two lines: the token, then its hash)."""
    lines = [line.split(":", 1)[-1].strip() if line.lower().startswith(("token", "hash"))
             else line.strip() for line in run(centralino, ["new-token"]).splitlines()
             if line.strip()]
    check(len(lines) >= 2, f"new-token printed {lines!r}")
    return lines[0], lines[1]


def config_text(password_hash, admin_hash, reader_hash):
    """A small shop without dev mode."""
    return f"""
[node]
actor_threads = 2

[[operators]]
name = "ops"
token_hash = "{admin_hash}"
scopes = ["admin"]

[[operators]]
name = "wallboard"
token_hash = "{reader_hash}"
scopes = ["read-only"]

[identity]
shop_secret = "hex:{os.urandom(32).hex()}"
visitor_secret = "hex:{os.urandom(32).hex()}"

[desk]
offer_timeout_secs = 5
wrap_up_secs = 0

[[departments]]
name = "sales"

[[departments]]
name = "support"

[[teams]]
name = "italian"
language = "it"

[[agents]]
id = "giulia"
name = "Giulia"
password_hash = "{password_hash}"
team = "italian"
capacity = 2
skills = {{ "lang:it" = 5, sales = 5, support = 3 }}
"""


class Node:
    """A `router --standalone` on loopback with its own config and data dir."""

    def __init__(self, bin_dir, config):
        self.dir = Path(tempfile.mkdtemp(prefix="centralino-openapi-"))
        (self.dir / "centralino.toml").write_text(config)
        self.port = free_port()
        self.log_path = self.dir / "router.log"
        self.log = open(self.log_path, "w+")
        env = dict(os.environ, RUST_LOG="warn")
        env.pop("CENTRALINO_NODE__DEV_MODE", None)
        self.proc = subprocess.Popen(
            [str(bin_dir / "router"), "--standalone", "--config", str(self.dir / "centralino.toml"),
             "--grpc-addr", f"127.0.0.1:{self.port}", "--metrics-addr", "",
             "--data-dir", str(self.dir / "data")],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.base = f"http://127.0.0.1:{self.port}"

    def output(self):
        self.log.flush()
        return self.log_path.read_text()[-4000:]

    def wait_document(self, secs=60):
        """The OpenAPI document once the node answers it."""
        deadline = time.time() + secs
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"the router exited with {self.proc.returncode}:\n{self.output()}")
            try:
                status, headers, body = request(self.base + "/v1/openapi.json")
                if status == 200:
                    check(headers.get("content-type", "").startswith("application/json"),
                          f"/v1/openapi.json has Content-Type {headers.get('content-type')!r}")
                    return json.loads(body)
                last = f"HTTP {status}: {body[:200]!r}"
            except OSError as e:
                last = str(e)
            time.sleep(0.3)
        raise Failed(f"GET /v1/openapi.json did not answer 200 within {secs} s ({last})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def request(url, method="GET", body=None, token=None, headers=None, timeout=10):
    """(status, lowercase headers, body bytes) of one plain HTTP request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def first_event(url, token, timeout=10):
    """The first SSE event of a stream: (status, content type, {field: value})."""
    req = urllib.request.Request(url, method="GET")
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Accept", "text/event-stream")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        fields = {}
        for raw in resp:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if "data" in fields:
                    return resp.status, resp.headers.get("content-type", ""), fields
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
    raise Failed(f"{url}: the stream ended before any event")


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

class Schemas:
    """Validates JSON values against the document's component schemas."""

    def __init__(self, doc):
        import jsonschema
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012
        self.doc = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource("urn:openapi", resource)
        self.jsonschema = jsonschema

    def validate(self, value, component, what):
        schema = {"$ref": f"urn:openapi#/components/schemas/{component}"}
        validator = self.jsonschema.Draft202012Validator(schema, registry=self.registry)
        errors = sorted(validator.iter_errors(value), key=lambda e: e.path)
        check(not errors, f"{what}: not a valid {component}: "
                          + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
                          + f"\n{json.dumps(value)[:600]}")


def validate_document(doc):
    from openapi_spec_validator import validate
    try:
        validate(doc)
    except Exception as e:  # the validator's own error types vary between versions
        raise Failed(f"/v1/openapi.json is not a valid OpenAPI document: {e}") from e
    check(doc.get("openapi", "").startswith("3.1"), f"openapi is {doc.get('openapi')!r}")
    operations = [(path, method) for path, item in doc["paths"].items() for method in item]
    for path, method in operations:
        op = doc["paths"][path][method]
        for status in ("400", "401", "403", "404", "409", "429", "503"):
            check(status in op["responses"], f"{method.upper()} {path} does not document {status}")
    print(f"  the document is valid OpenAPI {doc['openapi']}: {len(operations)} operations, "
          f"{len(doc['components']['schemas'])} schemas")
    return operations


def expect_error(schemas, what, status, headers, body, want_status, want_codes):
    wanted = {want_status} if isinstance(want_status, int) else set(want_status)
    check(status in wanted, f"{what}: HTTP {status}, expected {sorted(wanted)}: {body[:300]!r}")
    check(headers.get("content-type", "").startswith("application/json"),
          f"{what}: Content-Type {headers.get('content-type')!r}, expected application/json")
    try:
        value = json.loads(body)
    except ValueError as e:
        raise Failed(f"{what}: the error body is not JSON ({e}): {body[:300]!r}") from e
    schemas.validate(value, "Error", what)
    check(value["code"] in want_codes, f"{what}: code {value['code']}, expected {want_codes}")
    print(f"  {what}: {status} {value['code']}")


def check_streams(node, doc, schemas, admin_token, reader_token):
    base = node.base
    bad = "not-a-token-" + uuid.uuid4().hex
    # A bad operator token on every admin stream (and a unary admin call) is 401 JSON.
    for path in ["/v1/admin/snapshot/stream", "/v1/admin/integration-events/stream",
                 "/v1/admin/conversations/c-nope/watch"]:
        check(path in doc["paths"] or path.replace("c-nope", "{id}") in doc["paths"],
              f"{path} is not in the document")
        expect_error(schemas, f"GET {path} with a bad operator token",
                     *request(base + path, token=bad), 401, {"UNAUTHENTICATED"})
        expect_error(schemas, f"GET {path} without a token",
                     *request(base + path), 401, {"UNAUTHENTICATED"})
    expect_error(schemas, "POST /v1/admin/get-snapshot with a bad operator token",
                 *request(base + "/v1/admin/get-snapshot", "POST", {}, token=bad),
                 401, {"UNAUTHENTICATED"})
    # A read-only token cannot act.
    expect_error(schemas, "POST /v1/admin/set-agent-status with a read-only token",
                 *request(base + "/v1/admin/set-agent-status", "POST",
                          {"agentId": "giulia", "status": "AGENT_STATUS_AVAILABLE"},
                          token=reader_token), 403, {"PERMISSION_DENIED"})

    # A conversation, then its event stream with a wrong token and with its own.
    status, headers, body = request(base + "/v1/conversations", "POST", {"department": "sales", "language": "it"})
    check(status == 200, f"POST /v1/conversations: HTTP {status}: {body[:300]!r}")
    started = json.loads(body)
    schemas.validate(started, "StartConversationResponse", "POST /v1/conversations")
    cid, token = started.get("conversationId"), started.get("token")
    check(cid and token, f"POST /v1/conversations answered {started}")
    events = f"/v1/conversations/{cid}/events"
    expect_error(schemas, "GET /v1/conversations/{id}/events with a wrong token",
                 *request(base + events, token=bad), (401, 403),
                 {"UNAUTHENTICATED", "PERMISSION_DENIED"})
    expect_error(schemas, "GET /v1/conversations/{id}/events with another conversation's id",
                 *request(base + "/v1/conversations/c-nope/events", token=token),
                 (401, 403, 404), {"UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND"})
    expect_error(schemas, "GET /v1/conversations/{id}/events with Last-Event-ID not a number",
                 *request(base + events, token=token, headers={"Last-Event-ID": "x"}),
                 400, {"INVALID_ARGUMENT"})
    status, ctype, event = first_event(base + events, token)
    check(status == 200 and ctype.startswith("text/event-stream"),
          f"GET {events}: HTTP {status} {ctype!r}")
    schemas.validate(json.loads(event["data"]), "ConversationEvent", f"GET {events} data:")
    check(event.get("event") not in (None, "", "error"), f"GET {events}: first event {event}")
    check(event.get("id", "").isdigit(), f"GET {events}: first event has no id: {event}")
    print(f"  GET /v1/conversations/{{id}}/events: first event `{event['event']}` id "
          f"{event['id']} is a valid ConversationEvent")
    # The operator watching it sees the same event.
    watch = f"/v1/admin/conversations/{cid}/watch"
    status, ctype, watched = first_event(base + watch, admin_token)
    check(ctype.startswith("text/event-stream"), f"GET {watch}: {ctype!r}")
    schemas.validate(json.loads(watched["data"]), "ConversationEvent", f"GET {watch} data:")
    check(watched.get("id") == event["id"], f"GET {watch}: first id {watched.get('id')} "
                                            f"!= the customer's {event['id']}")
    print(f"  GET /v1/admin/conversations/{{id}}/watch: first event `{watched['event']}`")
    status, ctype, snapshot = first_event(base + "/v1/admin/snapshot/stream", reader_token)
    check(snapshot.get("event") == "snapshot", f"snapshot stream: first event {snapshot}")
    schemas.validate(json.loads(snapshot["data"]), "Snapshot", "snapshot stream data:")
    print("  GET /v1/admin/snapshot/stream: first event is a valid Snapshot")
    # Closing answers the outcome.
    status, headers, body = request(base + f"/v1/conversations/{cid}/close", "POST", {},
                                    token=token)
    check(status == 200, f"close: HTTP {status}: {body[:300]!r}")
    schemas.validate(json.loads(body), "CloseConversationResponse", "close")


def check_desk(node, doc, schemas, password):
    """The desk session by hand (schemathesis cannot log in): a refused login, a login, a
    command, the first event, the logout; each answer against the document."""
    base = node.base
    bad = "not-a-token-" + uuid.uuid4().hex
    for path in ["/v1/agent/sessions", "/v1/agent/sessions/{sid}/events",
                 "/v1/agent/sessions/{sid}/commands", "/v1/agent/sessions/{sid}"]:
        check(path in doc["paths"], f"{path} is not in the document")
    expect_error(schemas, "POST /v1/agent/sessions with a wrong password",
                 *request(base + "/v1/agent/sessions", "POST",
                          {"agentId": "giulia", "password": "wrong " + uuid.uuid4().hex}),
                 401, {"UNAUTHENTICATED"})
    expect_error(schemas, "POST /v1/agent/sessions with an unknown field",
                 *request(base + "/v1/agent/sessions", "POST", {"agentId": "giulia", "x": 1}),
                 400, {"INVALID_ARGUMENT"})
    status, headers, body = request(base + "/v1/agent/sessions", "POST",
                                    {"agentId": "giulia", "password": password})
    check(status == 201, f"POST /v1/agent/sessions: HTTP {status}: {body[:300]!r}")
    created = json.loads(body)
    schemas.validate(created, "DeskSession", "POST /v1/agent/sessions")
    sid, token = created.get("sessionId"), created.get("sessionToken")
    check(sid and token and created.get("loggedIn") is not None,
          f"POST /v1/agent/sessions answered {created}")
    print("  POST /v1/agent/sessions: 201, a valid DeskSession")
    session = f"/v1/agent/sessions/{sid}"
    expect_error(schemas, "GET /v1/agent/sessions/{sid}/events with a wrong token",
                 *request(base + session + "/events", token=bad), (401, 403),
                 {"UNAUTHENTICATED", "PERMISSION_DENIED"})
    expect_error(schemas, "POST /v1/agent/sessions/{sid}/commands with a wrong token",
                 *request(base + session + "/commands", "POST", {"requestId": "r0"}, token=bad),
                 (401, 403), {"UNAUTHENTICATED", "PERMISSION_DENIED"})
    status, headers, body = request(
        base + session + "/commands", "POST",
        {"requestId": "r1", "setStatus": {"status": "AGENT_STATUS_AVAILABLE"}}, token=token)
    check(status == 202, f"POST {session}/commands: HTTP {status}: {body[:300]!r}")
    schemas.validate(json.loads(body), "CommandAccepted", "POST /v1/agent/sessions/{sid}/commands")
    print("  POST /v1/agent/sessions/{sid}/commands: 202, a valid CommandAccepted")
    status, ctype, event = first_event(base + session + "/events", token)
    check(ctype.startswith("text/event-stream"), f"GET {session}/events: {ctype!r}")
    schemas.validate(json.loads(event["data"]), "AgentEvent", "desk events data:")
    check(event.get("event") == "logged_in", f"desk events: first event {event}")
    print(f"  GET /v1/agent/sessions/{{sid}}/events: first event `{event['event']}` is a valid "
          "AgentEvent")
    status, headers, body = request(base + session, "DELETE", token=token)
    check(status == 204 and not body, f"DELETE {session}: HTTP {status}: {body[:300]!r}")
    expect_error(schemas, "DELETE /v1/agent/sessions/{sid} again",
                 *request(base + session, "DELETE", token=token), (401, 404),
                 {"UNAUTHENTICATED", "NOT_FOUND"})


def run_schemathesis(node, admin_token, max_examples, report_dir):
    """Schemathesis over the customer and admin operations but the streams."""
    cli = VENV / "bin" / "schemathesis"
    cmd = [str(cli), "run", f"{node.base}/v1/openapi.json",
           "--checks", CHECKS,
           "--include-tag", "customer", "--include-tag", "admin",
           "--exclude-path-regex", STREAMS,
           "--header", f"Authorization: Bearer {admin_token}",
           "--max-examples", str(max_examples),
           "--phases", "examples,coverage,fuzzing,stateful",
           "--workers", "2",
           "--seed", "12",
           "--request-timeout", "10",
           "--suppress-health-check", "all",
           "--report", "junit", "--report-dir", str(report_dir)]
    print("  " + " ".join(c if "Bearer" not in c else "Authorization: Bearer ***" for c in cmd))
    started = time.time()
    try:
        # Its own cache (.schemathesis, .hypothesis) goes next to the report.
        report_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(cmd, timeout=300, cwd=report_dir, env=dict(os.environ, NO_COLOR="1"))
    except subprocess.TimeoutExpired as e:
        raise Failed("schemathesis did not finish within 300 s") from e
    print(f"  schemathesis finished in {time.time() - started:.0f} s with {done.returncode}")
    check(done.returncode == 0, f"schemathesis found failures (exit {done.returncode}); "
                                f"report in {report_dir}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_bin = ROOT / "target" / ("release" if (ROOT / "target/release/router").exists()
                                     else "debug")
    parser.add_argument("--bin-dir", type=Path, default=default_bin,
                        help="where router and centralino are (default: target/release, "
                             "else target/debug)")
    parser.add_argument("--max-examples", type=int, default=30,
                        help="schemathesis test cases per operation and phase")
    parser.add_argument("--keep", action="store_true", help="keep the node's directory")
    parser.add_argument("--no-desk", action="store_true",
                        help="do not call the desk routes (a build whose node serves none)")
    args = parser.parse_args()
    ensure_venv()

    bin_dir = args.bin_dir.resolve()
    for name in ("router", "centralino"):
        if not (bin_dir / name).exists():
            sys.exit(f"check_openapi.py: {bin_dir / name} is missing "
                     f"(cargo build --bins, or --bin-dir)")
    centralino = bin_dir / "centralino"
    password = "correct horse " + uuid.uuid4().hex[:8]
    password_hash = run(centralino, ["hash-password"], password + "\n").strip()
    admin_token, admin_hash = new_token(centralino)
    reader_token, reader_hash = new_token(centralino)

    node = Node(bin_dir, config_text(password_hash, admin_hash, reader_hash))
    failed = False
    try:
        print("==> GET /v1/openapi.json")
        doc = node.wait_document()
        validate_document(doc)
        schemas = Schemas(doc)
        print("==> the event streams and the error bodies, by hand")
        check_streams(node, doc, schemas, admin_token, reader_token)
        if args.no_desk:
            print("==> the desk routes: not called (--no-desk)")
        else:
            print("==> the desk session, by hand")
            check_desk(node, doc, schemas, password)
        print("==> schemathesis over the customer and admin operations")
        run_schemathesis(node, admin_token, args.max_examples,
                         ROOT / "target" / "schemathesis")
        check(node.proc.poll() is None, f"the router died during the run:\n{node.output()}")
    except Failed as e:
        failed = True
        print(f"check_openapi.py: FAILED: {e}", file=sys.stderr)
        print(f"--- router log (last lines) ---\n{node.output()}", file=sys.stderr)
    finally:
        node.stop()
        if not args.keep:
            shutil.rmtree(node.dir, ignore_errors=True)
    if failed:
        sys.exit(1)
    print("check_openapi.py: the browser API conforms to its OpenAPI document")


if __name__ == "__main__":
    main()
