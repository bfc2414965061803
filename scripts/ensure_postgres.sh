#!/usr/bin/env bash
# Makes sure a PostgreSQL server is installed (Debian's postgresql package), for the record's
# tests and the local cluster. Idempotent: quiet when the server binaries are already there.
#
# The package's post-install script creates a "main" cluster and may start it on port 5432;
# tests start their own throwaway servers on free ports, so a server left running by the
# install is stopped again.
set -euo pipefail

find_postgres() {
    local bin
    for bin in /usr/lib/postgresql/*/bin/postgres; do
        if [[ -x "$bin" ]]; then
            echo "$bin"
        fi
    done | sort -V | tail -n 1 | grep . # grep fails on empty output
}

if ! pg_bin="$(find_postgres)"; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "ensure_postgres: postgresql is missing and installing it needs root (apt-get install postgresql)" >&2
        exit 1
    fi
    # Remember which postgres processes ran before, so only those the install started are stopped.
    before="$(pgrep -x postgres || true)"
    echo "ensure_postgres: installing postgresql" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        systemctl stop postgresql >/dev/null 2>&1 || true
        systemctl disable postgresql >/dev/null 2>&1 || true
    fi
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _; do
            pg_ctlcluster "$version" "$cluster" stop >/dev/null 2>&1 || true
        done
    fi
    for pid in $(pgrep -x postgres || true); do
        if ! grep -qx "$pid" <<<"$before"; then
            echo "ensure_postgres: stopping postgres $pid started by the package" >&2
            kill "$pid" 2>/dev/null || true
        fi
    done
    if ! pg_bin="$(find_postgres)"; then
        echo "ensure_postgres: postgres is still missing after installing postgresql" >&2
        exit 1
    fi
fi

"$pg_bin" --version
