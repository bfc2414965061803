#!/usr/bin/env bash
# Makes sure an etcd server binary is installed (Debian's etcd-server package), for the
# multi-process tests and cluster mode. Idempotent: quiet when etcd is already there.
#
# The package's post-install script may start an etcd service on 127.0.0.1:2379; tests
# spawn their own members on free ports, so a service left running by the install is
# stopped again.
set -euo pipefail

find_etcd() {
    if command -v etcd >/dev/null 2>&1; then
        command -v etcd
    elif [[ -x /usr/bin/etcd ]]; then
        echo /usr/bin/etcd
    else
        return 1
    fi
}

if ! etcd_bin="$(find_etcd)"; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "ensure_etcd: etcd is missing and installing it needs root (apt-get install etcd-server)" >&2
        exit 1
    fi
    # Remember which etcd processes ran before, so only those the install started are stopped.
    before="$(pgrep -x etcd || true)"
    echo "ensure_etcd: installing etcd-server" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        systemctl stop etcd >/dev/null 2>&1 || true
        systemctl disable etcd >/dev/null 2>&1 || true
    fi
    for pid in $(pgrep -x etcd || true); do
        if ! grep -qx "$pid" <<<"$before"; then
            echo "ensure_etcd: stopping etcd $pid started by the package" >&2
            kill "$pid" 2>/dev/null || true
        fi
    done
    if ! etcd_bin="$(find_etcd)"; then
        echo "ensure_etcd: etcd is still missing after installing etcd-server" >&2
        exit 1
    fi
fi

"$etcd_bin" --version | sed -n 1p # sed reads it all: no SIGPIPE under pipefail
