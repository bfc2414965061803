#!/usr/bin/env bash
# The browser tests of the pages (scripts/browser/test.mjs): the widget on the demo shop, the
# agent console and the wallboard in Debian's headless Chromium, driven by playwright-core
# (never a browser download). Installs what is missing (chromium from apt, the npm packages
# of scripts/browser from its lock file), starts two standalone dev-mode nodes and runs the
# flows against them:
#   - a chat node with the example configuration, its clock simulated at speed 1 from a
#     Monday 11:00 in Rome (the Italian team is open), no agent logged in;
#   - an out-of-hours node (scripts/browser/offline.toml: every team has hours) at 03:00,
#     for the offline form and its reopening time (10:00).
# Screenshots go to target/screenshots/. Usage:
#   bash scripts/check_browser.sh [BIN_DIR]     (BIN_DIR holds `router`; default
#                                                $CENTRALINO_BIN_DIR or target/release)
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir=${1:-${CENTRALINO_BIN_DIR:-target/release}}
router=$bin_dir/router
if [[ ! -x $router ]]; then
  echo "check_browser: no router binary at $router (cargo build --release --bin router, or pass target/debug)" >&2
  exit 1
fi

as_root() {
  if [[ $(id -u) != 0 ]]; then
    echo "check_browser: $* needs root (run as root, or install it first)" >&2
    exit 1
  fi
  "$@"
}

apt_updated=0
apt_install() {
  if [[ $apt_updated == 0 ]]; then
    as_root apt-get update
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# Debian's Chromium (playwright's own browser downloads cannot be used here).
chromium_bin=${CENTRALINO_BROWSER_CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $chromium_bin ]]; then
  apt_install chromium chromium-driver
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if (( node_major < 20 )); then
  echo "check_browser: playwright-core needs Node.js 20 or newer, this is $(node --version)" >&2
  exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
  apt_install python3
fi
"$chromium_bin" --version

# playwright-core, exactly as scripts/browser/package-lock.json pins it.
modules=scripts/browser/node_modules
if [[ ! -d $modules/playwright-core ]] || ! cmp -s scripts/browser/package-lock.json "$modules/.centralino-lock.json"; then
  rm -rf "$modules"
  npm ci --prefix scripts/browser --no-audit --no-fund
  cp scripts/browser/package-lock.json "$modules/.centralino-lock.json"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
chat_port=$(free_port)
offline_port=$(free_port)
chat_dir=$(mktemp -d)
offline_dir=$(mktemp -d)
chat_pid=""
offline_pid=""

stop_nodes() {
  for pid in $chat_pid $offline_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $chat_pid $offline_pid; do
    wait "$pid" 2>/dev/null || true
  done
  chat_pid=""
  offline_pid=""
}
cleanup() {
  stop_nodes
  rm -rf "$chat_dir" "$offline_dir"
}
trap cleanup EXIT

# The chat node: the built-in example configuration (agents giulia, francesca, ... with the
# demo passwords <id>-pw, operator token demo-operator-token), Monday 23 November 2026 11:00.
CENTRALINO_CLOCK__MODE=simulated CENTRALINO_CLOCK__SPEED=1 CENTRALINO_CLOCK__START=2026-11-23T11:00:00+01:00 \
  RUST_LOG=warn "$router" --standalone --dev --grpc-addr "127.0.0.1:$chat_port" --metrics-addr "" \
  --data-dir "$chat_dir" > "$chat_dir/router.log" 2>&1 &
chat_pid=$!
# The out-of-hours node: the same Monday at 03:00, every team closed until 10:00 (Rome).
CENTRALINO_CLOCK__MODE=simulated CENTRALINO_CLOCK__SPEED=1 CENTRALINO_CLOCK__START=2026-11-23T03:00:00+01:00 \
  RUST_LOG=warn "$router" --standalone --dev --config scripts/browser/offline.toml \
  --grpc-addr "127.0.0.1:$offline_port" --metrics-addr "" \
  --data-dir "$offline_dir" > "$offline_dir/router.log" 2>&1 &
offline_pid=$!
reopens_at_ms=$(( $(date -d '2026-11-23T10:00:00+01:00' +%s) * 1000 ))
echo "check_browser: chat node on 127.0.0.1:$chat_port (pid $chat_pid), out-of-hours node on 127.0.0.1:$offline_port (pid $offline_pid)"

# Both answer their pages (the demo shop at /) before the browser starts.
python3 - "http://127.0.0.1:$chat_port/" "http://127.0.0.1:$offline_port/" <<'PYEOF'
import sys, time, urllib.request
for url in sys.argv[1:]:
    for attempt in range(120):
        try:
            if urllib.request.urlopen(url, timeout=5).status == 200:
                break
        except OSError:
            pass
        time.sleep(0.5)
    else:
        sys.exit(f"check_browser: the node at {url} did not answer within 60 s")
PYEOF
# ... and it is them answering (a port taken meanwhile would leave the node dead).
for pid in $chat_pid $offline_pid; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "check_browser: a node exited at start:" >&2
    tail -n 40 "$chat_dir/router.log" "$offline_dir/router.log" >&2 || true
    exit 1
  fi
done

mkdir -p target/screenshots
rm -f target/screenshots/*.png
rc=0
node scripts/browser/test.mjs --base "http://127.0.0.1:$chat_port" \
  --offline-base "http://127.0.0.1:$offline_port" --screenshots target/screenshots \
  --chromium "$chromium_bin" --reopens-at-unix-ms "$reopens_at_ms" || rc=$?
for required in widget console wallboard widget-phone; do
  if [[ ! -s target/screenshots/$required.png ]]; then
    echo "check_browser: missing screenshot target/screenshots/$required.png" >&2
    [[ $rc != 0 ]] || rc=1
  fi
done
if [[ $rc != 0 ]]; then
  for log in "$chat_dir/router.log" "$offline_dir/router.log"; do
    echo "--- last lines of $log" >&2
    tail -n 40 "$log" >&2 || true
  done
  exit "$rc"
fi
echo "check_browser: all browser flows passed; screenshots in target/screenshots/"
