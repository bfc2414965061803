#!/usr/bin/env python3
"""Checks a live node's gRPC reflection the way an older client sees it.

Usage: check_reflection.py HOST:PORT [--expect SERVICE ...]

Python's grpcio-reflection speaks grpc.reflection.v1alpha only (grpcurl and newer tools ask
v1 first). Through it, this lists the node's services and describes each one, and fails if
v1alpha is not served (UNIMPLEMENTED), if the list is not exactly the expected public
services (by default those of a standalone node), or if an internal service (RouterInternal,
AgentNodeInternal) is listed or can be described.
"""

import argparse
import sys

try:
    import grpc
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )
except ImportError:  # scripts/test installs scripts/requirements-reflection.txt into a venv
    sys.exit("check_reflection.py: grpcio-reflection is missing "
             "(pip install -r scripts/requirements-reflection.txt)")

STANDALONE = [
    "centralino.v1.ConversationService",
    "centralino.v1.AgentDesk",
    "centralino.v1.Admin",
    "grpc.health.v1.Health",
]
INTERNAL = ["centralino.v1.RouterInternal", "centralino.v1.AgentNodeInternal"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr", help="HOST:PORT of the node's gRPC listener")
    parser.add_argument("--expect", action="append",
                        help="a public service the node lists (repeat; default: standalone)")
    args = parser.parse_args()
    expected = sorted(args.expect or STANDALONE)

    errors = []
    with grpc.insecure_channel(args.addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        database = ProtoReflectionDescriptorDatabase(channel)
        try:
            listed = sorted(database.get_services())
        except grpc.RpcError as e:
            sys.exit("check_reflection.py: v1alpha ListServices failed: %s %s"
                     % (e.code().name, e.details()))
        if listed != expected:
            errors.append("v1alpha lists %s, expected %s" % (listed, expected))
        pool = DescriptorPool(database)
        for name in expected:
            try:
                service = pool.FindServiceByName(name)
            except KeyError as e:
                errors.append("%s cannot be described: %s" % (name, e))
                continue
            if not service.methods:
                errors.append("%s is described without methods" % name)
        for name in INTERNAL:
            if name in listed:
                errors.append("internal service %s is listed" % name)
            # A lookup that fails may end the reflection stream: one database per lookup.
            try:
                DescriptorPool(ProtoReflectionDescriptorDatabase(channel)).FindServiceByName(name)
                errors.append("internal service %s can be described" % name)
            except KeyError:
                pass
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    errors.append("looking up %s failed: %s %s"
                                  % (name, e.code().name, e.details()))

    for error in errors:
        print("check_reflection.py: " + error, file=sys.stderr)
    if errors:
        return 1
    print("check_reflection.py: %s lists and describes %s over v1alpha, no internal service"
          % (args.addr, ", ".join(expected)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
