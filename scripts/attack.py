#!/usr/bin/env python3
"""The attack suite: issue 10's findings replayed from outside, as an attacker would.

Usage: attack.py [--bin-dir target/release] [--only NAME ...] [--results PATH]

A Python client written against the .proto files only (compiled here with grpcio-tools),
against real `router --standalone` processes started without dev mode, with argon2id agent
hashes, a hashed operator token and a shop secret made by `centralino hash-password` /
`centralino new-token` (the way an operator makes them). Each check starts its own node with
the configuration it needs and asserts what an outsider can and cannot do:

- internal services are not served on the public port (UNIMPLEMENTED) nor listed;
- a start with placeholder secrets, plaintext passwords or a non-loopback address without
  TLS is refused;
- brute-force logins are throttled per agent and per client address, others stay served;
- a forged customer_id without the shop's signature gets no history, tier or sticky agent,
  and the reply says nothing the reply for a never-seen id would not say;
- one client's flood of starts and start/close pairs leaves another client served, and the
  node's memory (VmRSS) bounded;
- 400 streams that never read leave memory bounded;
- the queue cap holds exactly under 256 concurrent starts;
- operator tokens: a read-only token cannot act, an unknown token is refused, guessing
  tokens gets the address throttled while another address is served.

Client addresses: every connection to 127.0.0.1 comes from 127.0.0.1, so a second client is
made by a small TCP relay whose outgoing socket binds another loopback address (127.0.0.2 …);
the node sees that address as the client's.
"""

import argparse
import concurrent.futures
import hashlib
import hmac
import json
import os
import queue
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

try:
    import grpc
    from grpc_tools import protoc
except ImportError:  # scripts/test installs scripts/requirements-reflection.txt into a venv
    sys.exit("attack.py: grpcio and grpcio-tools are missing "
             "(pip install -r scripts/requirements-reflection.txt)")


def compile_protos(out):
    """Compiles proto/proto/centralino/v1/*.proto to Python modules in `out`."""
    include = ROOT / "proto" / "proto"
    files = sorted(str(p) for p in (include / "centralino" / "v1").glob("*.proto"))
    args = ["protoc", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", *files]
    if protoc.main(args) != 0:
        sys.exit("attack.py: protoc failed on " + " ".join(files))
    sys.path.insert(0, str(out))


PROTO_DIR = Path(tempfile.mkdtemp(prefix="centralino-attack-proto-"))
compile_protos(PROTO_DIR)
from centralino.v1 import admin_pb2, admin_pb2_grpc  # noqa: E402
from centralino.v1 import agent_pb2, agent_pb2_grpc  # noqa: E402
from centralino.v1 import conversation_pb2 as conv  # noqa: E402
from centralino.v1 import conversation_pb2_grpc as conv_grpc  # noqa: E402

MIB = 1024 * 1024


class Failed(Exception):
    """A check's assertion failed."""


def check(condition, message):
    if not condition:
        raise Failed(message)


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Credentials, made the way an operator makes them
# ---------------------------------------------------------------------------------------------

class Credentials:
    """Hashes and secrets for one run, made with the `centralino` binary."""

    def __init__(self, bin_dir):
        self.centralino = str(bin_dir / "centralino")
        self.password = "correct horse " + uuid.uuid4().hex[:8]
        self.password_hash = self.run(["hash-password"], self.password + "\n").strip()
        check(self.password_hash.startswith("$argon2id$"),
              f"hash-password printed {self.password_hash!r}, not an argon2id PHC string")
        self.admin_token, self.admin_hash = self.new_token()
        self.reader_token, self.reader_hash = self.new_token()
        self.shop_secret = os.urandom(32).hex()
        self.visitor_secret = os.urandom(32).hex()

    def run(self, args, stdin=""):
        done = subprocess.run([self.centralino, *args], input=stdin, capture_output=True,
                              text=True, timeout=60)
        check(done.returncode == 0, f"centralino {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def new_token(self):
        """Returns (token, hash) from `centralino new-token` (two lines: token, then hash)."""
        lines = [line.split(":", 1)[-1].strip() if line.lower().startswith(("token", "hash"))
                 else line.strip() for line in self.run(["new-token"]).splitlines()
                 if line.strip()]
        check(len(lines) >= 2, f"new-token printed {lines!r}")
        return lines[0], lines[1]

    def identity_token(self, customer_id, ttl_secs=3600):
        """The shop's signature of a customer id (what the shop's backend computes)."""
        expiry = int(time.time()) + ttl_secs
        payload = f"v1.{customer_id}.{expiry}"
        mac = hmac.new(bytes.fromhex(self.shop_secret), payload.encode(), hashlib.sha256)
        return f"{payload}.{mac.hexdigest()}"


def config_text(creds, limits="", extra=""):
    """A small shop without dev mode: real hashes, a hashed operator token, a shop secret."""
    agents = "\n".join(f"""
[[agents]]
id = "{agent_id}"
name = "{name}"
password_hash = "{creds.password_hash}"
team = "{team}"
capacity = {capacity}
skills = {{ {skills} }}
""" for agent_id, name, team, capacity, skills in [
        ("giulia", "Giulia", "italian", 2, '"lang:it" = 5, sales = 5, support = 3'),
        ("marco", "Marco", "italian", 2, '"lang:it" = 4, sales = 2, support = 5'),
        ("emma", "Emma", "english", 3, '"lang:en" = 5, sales = 4, support = 4'),
    ])
    return f"""
[node]
actor_threads = 2

[[operators]]
name = "ops"
token_hash = "{creds.admin_hash}"
scopes = ["admin"]

[[operators]]
name = "wallboard"
token_hash = "{creds.reader_hash}"
scopes = ["read-only"]

[identity]
shop_secret = "hex:{creds.shop_secret}"
visitor_secret = "hex:{creds.visitor_secret}"

[desk]
offer_timeout_secs = 5
wrap_up_secs = 0

[routing]
sticky_wait_secs = 5
rating_window_secs = 600

[limits]
{limits}

[[departments]]
name = "sales"

[[departments]]
name = "support"

[[departments]]
name = "returns"

[[teams]]
name = "italian"
language = "it"

[[teams]]
name = "english"
language = "en"
{agents}
{extra}
"""


# ---------------------------------------------------------------------------------------------
# A node process
# ---------------------------------------------------------------------------------------------

class Node:
    """A `router --standalone` process on loopback with its own config and data dir."""

    def __init__(self, bin_dir, config, args=(), expect_start=True):
        self.dir = Path(tempfile.mkdtemp(prefix="centralino-attack-"))
        (self.dir / "centralino.toml").write_text(config)
        self.port = free_port()
        self.metrics_port = free_port()
        self.log = open(self.dir / "router.log", "w+")
        env = dict(os.environ, RUST_LOG="warn")
        env.pop("CENTRALINO_NODE__DEV_MODE", None)
        self.proc = subprocess.Popen(
            [str(bin_dir / "router"), "--standalone", "--config", str(self.dir / "centralino.toml"),
             "--grpc-addr", f"127.0.0.1:{self.port}",
             "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
             "--data-dir", str(self.dir / "data"), *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.addr = f"127.0.0.1:{self.port}"
        if expect_start:
            self.wait_ready()

    def wait_ready(self, secs=30):
        deadline = time.time() + secs
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"the node exited with {self.proc.returncode}: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise Failed("the node did not listen within 30 s")

    def output(self):
        self.log.flush()
        return (self.dir / "router.log").read_text()[-4000:]

    def rss_mib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise Failed("no VmRSS in /proc/PID/status")

    def metric(self, name):
        import urllib.request
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                      timeout=10).read().decode()
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Relay:
    """Forwards connections made to a local port to `target`, from `source` (a loopback
    address), so that the node sees another client address."""

    def __init__(self, target_port, source):
        self.target = ("127.0.0.1", target_port)
        self.source = source
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket()
            upstream.bind((self.source, 0))
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def pump(a, b):
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select():
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def close(self):
        self.listener.close()


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------

def customer_client(addr):
    return conv_grpc.ConversationServiceStub(grpc.insecure_channel(addr))


def admin_client(addr):
    return admin_pb2_grpc.AdminStub(grpc.insecure_channel(addr))


def start(client, department="support", language="it", customer_id="", token="",
          name="Cliente", timeout=10):
    request = conv.StartConversationRequest(department=department, language=language,
                                            customer_id=customer_id, display_name=name)
    if token:
        request.identity_token = token
    return client.StartConversation(request, timeout=timeout)


def code_of(call):
    """Runs `call` and returns its status code (OK when it returns)."""
    try:
        call()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


class Desk:
    """An agent desktop session (the bidirectional stream)."""

    def __init__(self, addr, agent_id, password):
        self.channel = grpc.insecure_channel(addr)
        self.commands = queue.Queue()
        self.events = queue.Queue()
        self.stub = agent_pb2_grpc.AgentDeskStub(self.channel)
        self.send(agent_pb2.AgentCommand(login=agent_pb2.Login(agent_id=agent_id,
                                                                password=password)))
        self.call = self.stub.Session(iter(self.commands.get, None))
        threading.Thread(target=self.read, daemon=True).start()

    def send(self, command):
        if not command.request_id:
            command.request_id = uuid.uuid4().hex
        self.commands.put(command)

    def read(self):
        try:
            for event in self.call:
                self.events.put(event)
        except grpc.RpcError as e:
            self.events.put(e)
        self.events.put(None)

    def next(self, kind, secs=10):
        """The next event of `kind` (a oneof name), or the RpcError that ended the stream."""
        deadline = time.time() + secs
        while time.time() < deadline:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if event is None or isinstance(event, grpc.RpcError):
                return event
            if event.WhichOneof("kind") == kind:
                return getattr(event, kind)
        return None

    def close(self):
        self.commands.put(None)
        self.channel.close()


def login_code(addr, agent_id, password):
    """Logs in and returns (status code, trailing metadata) of the first answer."""
    desk = Desk(addr, agent_id, password)
    try:
        event = desk.next("logged_in", secs=15)
        if isinstance(event, grpc.RpcError):
            return event.code(), dict(event.trailing_metadata() or ())
        check(event is not None, "login got neither logged_in nor an error within 15 s")
        return grpc.StatusCode.OK, {}
    finally:
        desk.close()


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

def internal_not_public(ctx):
    node = ctx.node(config_text(ctx.creds))
    channel = grpc.insecure_channel(node.addr)
    for method in ["/centralino.v1.RouterInternal/Link",
                   "/centralino.v1.RouterInternal/AgentConversations",
                   "/centralino.v1.RouterInternal/Tell",
                   "/centralino.v1.AgentNodeInternal/Reserve",
                   "/centralino.v1.AgentNodeInternal/Deliver",
                   "/centralino.v1.AgentNodeInternal/ConversationEnded"]:
        call = channel.unary_unary(method, request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        code = code_of(lambda: call(b"", timeout=5))
        check(code == grpc.StatusCode.UNIMPLEMENTED, f"{method} on the public port: {code}")
    return "6 internal RPCs answer UNIMPLEMENTED on the public port"


def refuses_unsafe_starts(ctx):
    said = []
    example = ROOT / "deploy" / "config" / "centralino.example.toml"
    cases = [
        ("the example's placeholder secrets", example.read_text(), ()),
        ("a plaintext password",
         config_text(ctx.creds).replace(f'password_hash = "{ctx.creds.password_hash}"',
                                        'password = "hunter2"', 1), ()),
        ("an empty password hash",
         config_text(ctx.creds).replace(ctx.creds.password_hash, "", 1), ()),
    ]
    for what, text, args in cases:
        node = Node(ctx.bin_dir, text, args, expect_start=False)
        try:
            code = node.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.stop()
            raise Failed(f"a node with {what} started")
        out = node.output()
        node.stop()
        check(code != 0, f"a node with {what} exited 0")
        said.append(f"{what}: exit {code}")
    # A non-loopback listener without TLS (0.0.0.0) is refused unless --insecure.
    node = Node(ctx.bin_dir, config_text(ctx.creds), expect_start=False)
    node.proc.kill()
    node.proc.wait()
    node.log.close()
    env = dict(os.environ, RUST_LOG="warn")
    env.pop("CENTRALINO_NODE__DEV_MODE", None)
    done = subprocess.run([str(ctx.bin_dir / "router"), "--standalone", "--config",
                           str(node.dir / "centralino.toml"), "--grpc-addr",
                           f"0.0.0.0:{free_port()}", "--metrics-addr", "",
                           "--data-dir", str(node.dir / "data2")],
                          capture_output=True, text=True, timeout=30, env=env)
    check(done.returncode != 0, "a node listening on 0.0.0.0 without TLS started")
    check("insecure" in (done.stdout + done.stderr).lower(),
          f"the refusal does not mention --insecure: {done.stderr[-500:]}")
    said.append(f"0.0.0.0 without TLS: exit {done.returncode}")
    return "; ".join(said)


def brute_force_logins(ctx):
    node = ctx.node(config_text(ctx.creds))
    codes = [login_code(node.addr, "giulia", "wrong-" + str(i))[0] for i in range(25)]
    check(codes[0] == grpc.StatusCode.UNAUTHENTICATED, f"first wrong password: {codes[0]}")
    throttled = [c for c in codes if c == grpc.StatusCode.RESOURCE_EXHAUSTED]
    check(len(throttled) >= 15, f"only {len(throttled)} of 25 wrong logins throttled: {codes}")
    code, trailers = login_code(node.addr, "giulia", ctx.creds.password)
    check(code == grpc.StatusCode.RESOURCE_EXHAUSTED,
          f"the right password went through during the lockout: {code}")
    check("grpc-retry-pushback-ms" in trailers, f"no retry hint: {trailers}")
    # Another agent from another address is still served.
    relay = Relay(node.port, "127.0.0.2")
    code, _ = login_code(relay.addr, "marco", ctx.creds.password)
    relay.close()
    check(code == grpc.StatusCode.OK, f"marco from another address: {code}")
    refusals = node.metric("centralino_agent_login_refusals_total")
    check(refusals >= 25, f"login refusals counted: {refusals}")
    return f"{len(throttled)}/25 throttled, the lockout holds the right password, " \
           f"marco from 127.0.0.2 logs in, {refusals:.0f} refusals counted"


def forged_customer_id(ctx):
    node = ctx.node(config_text(ctx.creds))
    client = customer_client(node.addr)
    creds = ctx.creds
    desk = Desk(node.addr, "marco", creds.password)
    check(desk.next("logged_in") is not None, "marco did not log in")
    # A real customer with history: a served conversation with a summary, then a VIP tier.
    real = start(client, customer_id="c-real", token=creds.identity_token("c-real"),
                 name="Maria Rossi")
    offer = desk.next("offer")
    check(offer is not None, "no offer for the real customer")
    desk.send(agent_pb2.AgentCommand(accept=agent_pb2.AcceptOffer(
        reservation_id=offer.reservation_id)))
    check(desk.next("assigned") is not None, "marco was not assigned")
    desk.send(agent_pb2.AgentCommand(close=agent_pb2.AgentClose(
        conversation_id=real.conversation_id, summary="card ending 4242, order 1187")))
    time.sleep(1)
    admin = admin_client(node.addr)
    admin.SetCustomerTier(admin_pb2.SetCustomerTierRequest(customer_id="c-real", tier="vip"),
                          metadata=[("authorization", f"Bearer {creds.admin_token}")],
                          timeout=10)
    # The attacker: the same customer_id, no signature (and a forged one).
    forged = start(client, customer_id="c-real", name="Attacker")
    stranger = start(client, customer_id="c-never-seen-" + uuid.uuid4().hex[:6], name="X")
    for field in ["returning_customer", "recontact", "priority", "offline"]:
        check(getattr(forged, field) == getattr(stranger, field),
              f"{field} differs for a forged id: {getattr(forged, field)} vs "
              f"{getattr(stranger, field)}")
    check(not forged.returning_customer, "the forged start is reported returning")
    offer = desk.next("offer")
    check(offer is not None, "no offer for the forged start")
    check(not offer.last_summary and not list(offer.history.summaries),
          f"the agent saw the real customer's history for a forged id: {offer}")
    check(offer.customer_display_name != "Maria Rossi", "the real customer's name leaked")
    bad = creds.identity_token("c-real")[:-2] + "00"
    code = code_of(lambda: start(client, customer_id="c-real", token=bad))
    check(code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT,
                   grpc.StatusCode.PERMISSION_DENIED),
          f"a tampered identity token: {code}")
    desk.close()
    return "a forged id gets the reply of a never-seen id, no history on the offer; " \
           f"a tampered signature: {code.name}"


def flood(ctx, limits="", rate_limited=True):
    """One client floods start/close pairs for 20 s; another client starts a conversation
    every 0.5 s from another address and must always be served."""
    node = ctx.node(config_text(ctx.creds, limits=limits))
    attacker = customer_client(node.addr)
    relay = Relay(node.port, "127.0.0.2")
    victim = customer_client(relay.addr)
    time.sleep(0.5)
    baseline = node.rss_mib()
    stop = time.time() + 20
    counts = {"ok": 0, "refused": 0, "other": 0}
    lock = threading.Lock()

    def pairs():
        while time.time() < stop:
            try:
                started = start(attacker, department="returns", timeout=5)
                attacker.CloseConversation(conv.CloseConversationRequest(
                    conversation_id=started.conversation_id, token=started.token), timeout=5)
                key = "ok"
            except grpc.RpcError as e:
                key = "refused" if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else "other"
            with lock:
                counts[key] += 1

    victims = {"ok": 0, "failed": []}

    def served():
        while time.time() < stop:
            try:
                started = start(victim, department="returns", timeout=5)
                victim.CloseConversation(conv.CloseConversationRequest(
                    conversation_id=started.conversation_id, token=started.token), timeout=5)
                victims["ok"] += 1
            except grpc.RpcError as e:
                victims["failed"].append(e.code().name)
            time.sleep(0.5)

    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        jobs = [pool.submit(pairs) for _ in range(8)] + [pool.submit(served)]
        for job in jobs:
            job.result()
    relay.close()
    peak = node.rss_mib()
    if rate_limited:
        check(counts["refused"] > 0, f"the flood was never limited: {counts}")
    else:
        check(counts["ok"] > 1000, f"only {counts['ok']} pairs went through: {counts}")
    check(not victims["failed"], f"the other client was refused: {victims}")
    check(victims["ok"] >= 20, f"the other client was served only {victims['ok']} times")
    snapshot = admin_client(node.addr).GetSnapshot(
        admin_pb2.GetSnapshotRequest(),
        metadata=[("authorization", f"Bearer {ctx.creds.reader_token}")], timeout=10)
    open_now = snapshot.counters.conversations_open
    check(open_now <= 16, f"{open_now} conversations still open after the start/close flood")
    check(peak - baseline < 150, f"RSS grew {peak - baseline:.0f} MiB under the flood")
    served_of = victims["ok"] + len(victims["failed"])
    return (f"attacker {counts}, the other client served {victims['ok']}/{served_of} times; "
            f"RSS {baseline:.0f} -> {peak:.0f} MiB; {open_now} open afterwards")


def flood_without_rate_limits(ctx):
    """The finding itself: with rate limits off and room for 200 live conversations,
    thousands of start/close pairs must not fill the node (a closed conversation waiting
    for its rating holds no live slot)."""
    return flood(ctx, limits="starts_per_minute_per_addr = 0\nmax_live_conversations = 200",
                 rate_limited=False)


def non_reading_streams(ctx):
    node = ctx.node(config_text(ctx.creds))
    client = customer_client(node.addr)
    conversations = [start(client) for _ in range(8)]
    time.sleep(0.5)
    baseline = node.rss_mib()
    channels, calls, refused = [], [], 0
    for i in range(400):
        c = conversations[i % len(conversations)]
        channel = grpc.insecure_channel(node.addr, options=[("grpc.use_local_subchannel_pool", 1)])
        channels.append(channel)
        stub = conv_grpc.ConversationServiceStub(channel)
        call = stub.StreamEvents(conv.StreamEventsRequest(
            conversation_id=c.conversation_id, token=c.token), timeout=120)
        calls.append(call)
    # Make every conversation produce events the non-reading streams would have to hold.
    blob = "x" * 3000
    for c in conversations:
        for n in range(40):
            try:
                client.SendMessage(conv.SendMessageRequest(
                    conversation_id=c.conversation_id, token=c.token,
                    message_id=f"m{n}", text=blob), timeout=5)
            except grpc.RpcError:
                break
    time.sleep(2)
    peak = node.rss_mib()
    for call in calls:
        if call.done() and call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            refused += 1
        call.cancel()
    for channel in channels:
        channel.close()
    check(peak - baseline < 100, f"400 non-reading streams grew RSS by {peak - baseline:.0f} MiB")
    check(refused > 0, "no stream was refused though 50 streams share each conversation token")
    return f"RSS {baseline:.0f} -> {peak:.0f} MiB; {refused} of 400 streams refused by the cap"


def queue_cap(ctx):
    cap = 40
    node = ctx.node(config_text(ctx.creds, limits=f"max_queue_length = {cap}"))
    relays = [Relay(node.port, f"127.0.1.{i}") for i in range(1, 33)]
    clients = [customer_client(r.addr) for r in relays]
    barrier = threading.Barrier(256)

    def one(i):
        barrier.wait()
        return code_of(lambda: start(clients[i % len(clients)], department="returns",
                                     timeout=20))

    with concurrent.futures.ThreadPoolExecutor(256) as pool:
        codes = list(pool.map(one, range(256)))
    for relay in relays:
        relay.close()
    ok = codes.count(grpc.StatusCode.OK)
    full = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    check(ok == cap, f"{ok} of 256 concurrent starts admitted into a queue capped at {cap}")
    check(ok + full == 256, f"unexpected answers: {set(codes)}")
    snapshot = admin_client(node.addr).GetSnapshot(
        admin_pb2.GetSnapshotRequest(),
        metadata=[("authorization", f"Bearer {ctx.creds.reader_token}")], timeout=10)
    depth = sum(q.depth + q.offering for q in snapshot.queues if q.department == "returns")
    check(depth == cap, f"the queue holds {depth}, the cap is {cap}")
    return f"256 concurrent starts: {ok} admitted, {full} RESOURCE_EXHAUSTED, queue {depth}/{cap}"


def operator_scopes(ctx):
    node = ctx.node(config_text(ctx.creds))
    admin = admin_client(node.addr)

    def as_(token, call):
        return code_of(lambda: call([("authorization", f"Bearer {token}")]))

    read = lambda md: admin.GetSnapshot(admin_pb2.GetSnapshotRequest(), metadata=md, timeout=10)
    act = lambda md: admin.SetCustomerTier(
        admin_pb2.SetCustomerTierRequest(customer_id="c1", tier="vip"), metadata=md, timeout=10)
    results = {
        "reader reads": as_(ctx.creds.reader_token, read),
        "reader acts": as_(ctx.creds.reader_token, act),
        "unknown token": as_("not-a-token", read),
        "admin acts": as_(ctx.creds.admin_token, act),
        "the hash as token": as_(ctx.creds.admin_hash, read),
    }
    check(results["reader reads"] == grpc.StatusCode.OK, f"{results}")
    check(results["reader acts"] == grpc.StatusCode.PERMISSION_DENIED, f"{results}")
    check(results["unknown token"] == grpc.StatusCode.UNAUTHENTICATED, f"{results}")
    check(results["the hash as token"] == grpc.StatusCode.UNAUTHENTICATED, f"{results}")
    check(results["admin acts"] == grpc.StatusCode.OK, f"{results}")
    # Guessing tokens: after a few unknown ones from this address every call waits, the
    # right token included, with a retry hint; another address is still served.
    guesses = []
    for i in range(12):
        guesses.append(as_(f"guess-{i}", read))
    check(all(c == grpc.StatusCode.UNAUTHENTICATED for c in guesses[:10]), f"guesses: {guesses}")
    try:
        read([("authorization", f"Bearer {ctx.creds.admin_token}")])
        raise Failed("the right token went through while the address was throttled")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f"throttled call: {e.code()}")
        trailers = dict(e.trailing_metadata() or ())
        check("grpc-retry-pushback-ms" in trailers, f"no retry hint: {trailers}")
    relay = Relay(node.port, "127.0.0.2")
    other = admin_client(relay.addr)
    other_code = code_of(lambda: other.GetSnapshot(
        admin_pb2.GetSnapshotRequest(),
        metadata=[("authorization", f"Bearer {ctx.creds.reader_token}")], timeout=10))
    relay.close()
    check(other_code == grpc.StatusCode.OK, f"a reader from 127.0.0.2: {other_code}")
    results["12 guesses, then the admin token"] = grpc.StatusCode.RESOURCE_EXHAUSTED
    results["reader from 127.0.0.2"] = other_code
    return ", ".join(f"{k}: {v.name}" for k, v in results.items())


CHECKS = [internal_not_public, refuses_unsafe_starts, brute_force_logins, forged_customer_id,
          flood, flood_without_rate_limits, non_reading_streams, queue_cap, operator_scopes]


class Context:
    def __init__(self, bin_dir):
        self.bin_dir = bin_dir
        self.creds = Credentials(bin_dir)
        self.nodes = []

    def node(self, config, args=()):
        node = Node(self.bin_dir, config, args)
        self.nodes.append(node)
        return node

    def stop_nodes(self):
        for node in self.nodes:
            node.stop()
        self.nodes = []


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    parser.add_argument("--only", action="append", help="run only this check (repeat)")
    parser.add_argument("--results", help="write the results as JSON here")
    args = parser.parse_args()
    ctx = Context(Path(args.bin_dir))
    results, failed = [], 0
    for check_fn in CHECKS:
        if args.only and check_fn.__name__ not in args.only:
            continue
        began = time.time()
        try:
            said = check_fn(ctx)
            results.append({"check": check_fn.__name__, "ok": True, "said": said})
            print(f"PASS {check_fn.__name__} ({time.time() - began:.1f}s): {said}", flush=True)
        except (Failed, grpc.RpcError, OSError) as e:
            failed += 1
            logs = "\n".join(n.output()[-1500:] for n in ctx.nodes)
            results.append({"check": check_fn.__name__, "ok": False, "said": str(e)})
            print(f"FAIL {check_fn.__name__}: {e}\n--- node log ---\n{logs}", flush=True)
        finally:
            ctx.stop_nodes()
    if args.results:
        Path(args.results).write_text(json.dumps(results, indent=2))
    print(f"attack.py: {len(results) - failed}/{len(results)} checks passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
