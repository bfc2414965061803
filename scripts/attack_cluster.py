#!/usr/bin/env python3
"""The local cluster's internal plane as an outsider meets it (issue 10), with grpcio only
(no generated stubs: empty requests are valid protobuf messages).

    python3 scripts/attack_cluster.py [--pki DIR] [--credentials DIR]
                                     # against `deploy/local/cluster.sh up` (without dev mode)

Checks, failing (exit 1) on the first surprise:
- dev mode is off: every router refuses the example's published operator token
  (`demo-operator-token`, UNAUTHENTICATED) while it answers GetSnapshot for the cluster's own
  read-only token ($CENTRALINO_LOCAL_DIR/credentials/reader.token), which cannot act
  (SetAgentStatus: PERMISSION_DENIED); no router's or agent-node's log has the dev-mode warning;
- the public ports (routers 50051-50053, agent-nodes 50061-50062) do not serve
  RouterInternal / AgentNodeInternal (UNIMPLEMENTED) and reflection does not name them;
- the internal ports (50151-50153, 50161-50162) refuse plaintext and TLS without a client
  certificate; with the cluster's certificates, an agent-node's certificate calling what
  only routers call on an agent-node gets PERMISSION_DENIED, and a forged agent id in a
  Link call from an agent-node that does not hold her login gets PERMISSION_DENIED.

Needs grpcio (scripts/test runs it from target/reflection-venv).
"""
import argparse
import os
import sys

import grpc

ROUTERS = [50051, 50052, 50053]
AGENT_NODES = [50061, 50062]
ROUTERS_INTERNAL = [50151, 50152, 50153]
AGENT_NODES_INTERNAL = [50161, 50162]
DEMO_OPERATOR_TOKEN = "demo-operator-token"  # the example configuration's, published
DEV_MODE_WARNING = "dev mode: plaintext passwords and placeholder secrets are accepted"
NODES = ["router-1", "router-2", "router-3", "agent-node-1", "agent-node-2"]
ROUTER_INTERNAL = ["Link", "AgentConversations", "Tell"]
AGENT_NODE_INTERNAL = ["Reserve", "CancelReservation", "Deliver", "ConversationEnded"]


def fail(message):
    print(f"attack_cluster: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def unary(channel, path, body=b"", token=None):
    """Calls `path` with raw request bytes (and `token` as the bearer token when given);
    returns the status code (OK when it answered)."""
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    metadata = [("authorization", f"Bearer {token}")] if token is not None else None
    try:
        call(body, timeout=5, metadata=metadata)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def field(number, text):
    """A length-delimited protobuf field (strings; short ones only)."""
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data


def reflection_names(channel):
    """The raw answer of reflection's ListServices (v1), as bytes."""
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=None,
        response_deserializer=None,
    )
    answers = call(iter([b"\x3a\x00"]), timeout=5)
    return b"".join(answers)


def tls(pki, name=None):
    ca = open(os.path.join(pki, "ca.pem"), "rb").read()
    if name is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=open(os.path.join(pki, f"{name}-key.pem"), "rb").read(),
        certificate_chain=open(os.path.join(pki, f"{name}.pem"), "rb").read(),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pki", default=os.path.join(
        os.environ.get("CENTRALINO_LOCAL_DIR", "/tmp/centralino-local"), "pki"))
    parser.add_argument("--credentials", default=None,
                        help="the cluster's credentials (default: next to --pki)")
    args = parser.parse_args()
    credentials = args.credentials or os.path.join(os.path.dirname(os.path.abspath(args.pki)), "credentials")
    logs = os.path.join(os.path.dirname(os.path.abspath(args.pki)), "logs")

    # Dev mode is off: the published demo token is refused where the cluster's own is honoured.
    for port in ROUTERS:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            code = unary(ch, "/centralino.v1.Admin/GetSnapshot", token=DEMO_OPERATOR_TOKEN)
            if code != grpc.StatusCode.UNAUTHENTICATED:
                fail(f"router {port} answered GetSnapshot for the example's demo-operator-token with {code} "
                     "(dev mode on, or the example's operators configured)")
    try:
        reader = open(os.path.join(credentials, "reader.token"), encoding="utf-8").read().strip()
    except OSError as e:
        fail(f"no operator token of the cluster ({e}): was it started by cluster.sh up without dev mode?")
    for port in ROUTERS:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            code = unary(ch, "/centralino.v1.Admin/GetSnapshot", token=reader)
            if code != grpc.StatusCode.OK:
                fail(f"router {port} answered GetSnapshot for the cluster's read-only token with {code}")
            # SetAgentStatus { agent_id = "giulia" }: an action, beyond read-only.
            code = unary(ch, "/centralino.v1.Admin/SetAgentStatus", field(1, "giulia"), token=reader)
            if code != grpc.StatusCode.PERMISSION_DENIED:
                fail(f"router {port} let the read-only token call SetAgentStatus: {code}")
    for name in NODES:
        try:
            text = open(os.path.join(logs, f"{name}.log"), encoding="utf-8", errors="replace").read()
        except OSError as e:
            fail(f"cannot read {name}'s log: {e}")
        if DEV_MODE_WARNING in text:
            fail(f"{name} runs in dev mode (its log: {DEV_MODE_WARNING!r})")
    print("dev mode off: demo-operator-token refused by every router, the cluster's read-only token "
          "honoured and unable to act; no node logs dev mode")

    for port in ROUTERS + AGENT_NODES:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            services = ROUTER_INTERNAL if port in ROUTERS else AGENT_NODE_INTERNAL
            service = "RouterInternal" if port in ROUTERS else "AgentNodeInternal"
            for method in services:
                code = unary(ch, f"/centralino.v1.{service}/{method}")
                if code != grpc.StatusCode.UNIMPLEMENTED:
                    fail(f"public port {port} answers {service}/{method} with {code}")
            listed = reflection_names(ch)
            if b"Internal" in listed or b"ConversationService" not in listed and port in ROUTERS:
                fail(f"reflection on public port {port}: {listed!r}")
    print("public ports: no internal service, none in reflection")

    for port in ROUTERS_INTERNAL + AGENT_NODES_INTERNAL:
        service = "RouterInternal/Tell" if port in ROUTERS_INTERNAL else "AgentNodeInternal/Reserve"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            code = unary(ch, f"/centralino.v1.{service}")
            if code != grpc.StatusCode.UNAVAILABLE:
                fail(f"internal port {port} answered plaintext with {code}")
        with grpc.secure_channel(f"127.0.0.1:{port}", tls(args.pki)) as ch:
            code = unary(ch, f"/centralino.v1.{service}")
            if code != grpc.StatusCode.UNAVAILABLE:
                fail(f"internal port {port} answered TLS without a client certificate with {code}")
    print("internal ports: plaintext and certificate-less TLS refused")

    # An agent-node's certificate calling what only routers call on an agent-node.
    with grpc.secure_channel(f"127.0.0.1:{AGENT_NODES_INTERNAL[0]}", tls(args.pki, "agent-node-2")) as ch:
        for method in AGENT_NODE_INTERNAL:
            code = unary(ch, f"/centralino.v1.AgentNodeInternal/{method}")
            if code != grpc.StatusCode.PERMISSION_DENIED:
                fail(f"agent-node-2's certificate called AgentNodeInternal/{method} on agent-node-1: {code}")
    # A router's certificate may (the call reaches the node and fails on its own terms).
    with grpc.secure_channel(f"127.0.0.1:{AGENT_NODES_INTERNAL[0]}", tls(args.pki, "router-1")) as ch:
        code = unary(ch, "/centralino.v1.AgentNodeInternal/CancelReservation")
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE):
            fail(f"router-1's certificate was refused by agent-node-1: {code}")
    # A forged agent id: agent-node-2 acting for an agent nobody logged in as there.
    with grpc.secure_channel(f"127.0.0.1:{ROUTERS_INTERNAL[0]}", tls(args.pki, "agent-node-2")) as ch:
        transcript = field(1, "c-forged") + field(2, "giulia") + bytes([0x92, 0x01, 0x00])  # field 18 (transcript): an empty message
        code = unary(ch, "/centralino.v1.RouterInternal/Link", transcript)
        if code != grpc.StatusCode.PERMISSION_DENIED:
            fail(f"a Link call for giulia from agent-node-2 got {code}")
        code = unary(ch, "/centralino.v1.RouterInternal/Tell")
        if code != grpc.StatusCode.PERMISSION_DENIED:
            fail(f"an agent-node's Tell got {code}")
    print("internal ports: wrong roles and a forged agent id refused")
    print("attack_cluster: OK")


if __name__ == "__main__":
    main()
