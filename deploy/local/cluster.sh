#!/usr/bin/env bash
# A local centralino cluster on 127.0.0.1: 3 etcd members, PostgreSQL (the system of record),
# 3 routers, 2 agent-nodes.
#
#   deploy/local/cluster.sh up                 build if needed, start everything, wait until ready
#   deploy/local/cluster.sh down               stop every process of the cluster (pid files only)
#   deploy/local/cluster.sh status             processes and router-1's cluster metrics
#   deploy/local/cluster.sh start|stop|restart NAME   one process (etcd-1, postgres, router-2, agent-node-1 …)
#
# Ports: etcd clients 2379/2479/2579, peers 2380/2480/2580; PostgreSQL 55432; routers gRPC
# 50051-50053, internal 50151-50153, metrics 9464-9466; agent-nodes gRPC 50061-50062, internal
# 50161-50162, metrics 9474-9475.
#
# PostgreSQL (Debian's postgresql, installed by scripts/ensure_postgres.sh when missing) keeps
# the routers' record ([record] postgres_url; cluster routers refuse to start without it outside
# dev mode, and it runs in dev mode too). `up` makes a fresh server in $CENTRALINO_LOCAL_DIR/postgres
# (initdb, role centralino with a random password made at every `up`, scram-sha-256 only),
# listening on 127.0.0.1:55432 and a unix socket in postgres-run/; as root the server runs as
# the `postgres` user (setpriv, in place, so its pid file holds the postmaster's pid) and the
# directories above $CENTRALINO_LOCAL_DIR get o+x so that user can reach its data. The routers
# get CENTRALINO_RECORD__POSTGRES_URL=postgres://centralino:…@127.0.0.1:55432/postgres (not
# saved in cluster.env; the password is in credentials/postgres.password only). `stop postgres`
# sends SIGINT (fast shutdown); `start postgres` waits until it accepts connections.
#
# Everything between the processes runs with mutual TLS: `up` makes a local CA and one
# certificate per process with openssl in $CENTRALINO_LOCAL_DIR/pki (kept across restarts):
# router-N and agent-node-N carry the URI SAN spiffe://centralino/<role>/<name> and IP SAN
# 127.0.0.1 ([cluster.tls] of the internal plane); etcd serves TLS with client-cert auth and
# peer TLS, and the nodes present etcd-client.pem ([cluster] etcd_*_file). The public gRPC
# ports stay plaintext on loopback (the demo, the sim and the fault scenarios use them).
#
# The nodes run WITHOUT dev mode, on credentials `up` makes (afresh at every `up`) in
# $CENTRALINO_LOCAL_DIR/credentials (mode 700, files 600; never printed): for every agent of
# the configuration a random password and its argon2id hash (`centralino hash-password`), two
# operators with random tokens stored as digests (`centralino new-token`): local-admin (scope
# admin) and local-reader (read-only), and random identity secrets ([identity] shop_secret,
# visitor_secret). Files there:
#   node.toml            the configuration the routers and agent-nodes run: the given one with
#                        those credentials in place of its own
#   sim.toml             the same for clients (`centralino sim --config`): the agents' plaintext
#                        passwords and `[node] admin_token` = local-reader's token (the token the
#                        sim sends; no node accepts this file outside dev mode)
#   admin.token, reader.token   the operators' tokens, one line each
#                        (grpcurl -H "authorization: Bearer $(cat …/admin.token)" …)
#   postgres.password    the PostgreSQL role centralino's password (made in dev mode too)
#
# Environment:
#   CENTRALINO_LOCAL_DIR       data, logs and pid files (default /tmp/centralino-local):
#                              etcd-1/ postgres/ router-1/ … logs/NAME.log pids/NAME.pid cluster.env
#   CENTRALINO_CONFIG_FILE     configuration of routers and agent-nodes
#                              (default deploy/config/centralino.example.toml)
#   CENTRALINO_BIN_DIR         where router and agent-node are (default $CARGO_TARGET_DIR/release,
#                              else target/release)
#   CENTRALINO_SKIP_BUILD=1    never run cargo build (fail when a binary is missing)
#   CENTRALINO_LOCAL_DEV_MODE=1   explicit opt-in to dev mode: the nodes run the configuration
#                              as given (the example's published placeholder secrets, plaintext
#                              passwords, admin_token accepted); credentials/sim.toml is then a
#                              copy of it and no credentials are made. Default: off.
#   CENTRALINO_LOCAL_ONLY_ETCD=1   up/down/status handle the etcd members only
#   CENTRALINO_UP_TIMEOUT_SECS how long `up` waits for readiness (default 60)
#   CENTRALINO_CLOCK__MODE, __SPEED, __START, __ANCHOR_UNIX_MS: a simulated clock; when MODE is
#                              set and ANCHOR_UNIX_MS is not, `up` sets it once (now) so all
#                              processes share one simulated time.
#   Any other CENTRALINO_<SECTION>__<KEY> (e.g. CENTRALINO_CLUSTER__LEASE_TTL_SECS) and RUST_LOG
#   reach every process. `up` saves them in cluster.env; start/restart reuse the saved values,
#   so a restarted process shares the clock anchor of the others.
#
# `down` and `stop` signal only the pids recorded in pids/ (SIGTERM, then SIGKILL after the
# drain budget + 5 s); nothing is ever killed by name. Sourcing this file (with
# CLUSTER_SH_LIB=1) defines the functions without running a command.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=${CENTRALINO_LOCAL_DIR:-/tmp/centralino-local}
BIN_DIR=${CENTRALINO_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
UP_TIMEOUT=${CENTRALINO_UP_TIMEOUT_SECS:-60}

ETCD_NAMES=(etcd-1 etcd-2 etcd-3)
ROUTER_NAMES=(router-1 router-2 router-3)
AGENT_NODE_NAMES=(agent-node-1 agent-node-2)
ETCD_ENDPOINTS=https://127.0.0.1:2379,https://127.0.0.1:2479,https://127.0.0.1:2579
ETCD_INITIAL_CLUSTER=etcd-1=https://127.0.0.1:2380,etcd-2=https://127.0.0.1:2480,etcd-3=https://127.0.0.1:2580
PKI=$DIR/pki
PG_PORT=55432
PG_DATA=$DIR/postgres
PG_SOCK=$DIR/postgres-run

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

only_etcd() { [[ ${CENTRALINO_LOCAL_ONLY_ETCD:-0} == 1 ]]; }

# Names of the processes `up`/`down`/`status` handle, in start order.
all_names() {
  if only_etcd; then
    echo "${ETCD_NAMES[@]}"
  else
    echo "${ETCD_NAMES[@]}" postgres "${ROUTER_NAMES[@]}" "${AGENT_NODE_NAMES[@]}"
  fi
}

# The index (1-based) of a process name: router-2 -> 2.
index_of() { echo "${1##*-}"; }

kind_of() {
  case $1 in
    etcd-[1-3]) echo etcd ;;
    postgres) echo postgres ;;
    router-[1-3]) echo router ;;
    agent-node-[1-2]) echo agent-node ;;
    *) die "unknown process name '$1' (etcd-1..3, postgres, router-1..3, agent-node-1..2)" ;;
  esac
}

# The address a process serves (etcd: client URL; others: gRPC).
addr_of() {
  local i
  i=$(index_of "$1")
  case $(kind_of "$1") in
    etcd) echo "127.0.0.1:$((2279 + 100 * i))" ;;
    postgres) echo "127.0.0.1:$PG_PORT" ;;
    router) echo "127.0.0.1:$((50050 + i))" ;;
    agent-node) echo "127.0.0.1:$((50060 + i))" ;;
  esac
}

etcd_peer_port() { echo $((2280 + 100 * $(index_of "$1"))); }

# The internal-plane address of a router or agent-node.
internal_of() {
  local i
  i=$(index_of "$1")
  case $(kind_of "$1") in
    router) echo "127.0.0.1:$((50150 + i))" ;;
    agent-node) echo "127.0.0.1:$((50160 + i))" ;;
  esac
}

# Issues $PKI/NAME.pem and NAME-key.pem signed by the local CA, with the given subjectAltName.
issue_cert() {
  local name=$1 san=$2
  [[ -f $PKI/$name.pem && -f $PKI/$name-key.pem ]] && return 0
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$PKI/$name-key.pem" -out "$PKI/$name.csr" -subj "/CN=$name" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca-key.pem" \
    -CAcreateserial -days 365 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.pem" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
  chmod 600 "$PKI/$name-key.pem"
}

# The local CA and every process's certificate (made once; `rm -r $DIR/pki` renews them).
ensure_pki() {
  command -v openssl >/dev/null 2>&1 || die "openssl is missing (apt-get install openssl)"
  mkdir -p "$PKI"
  if [[ ! -f $PKI/ca.pem || ! -f $PKI/ca-key.pem ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -sha256 \
      -keyout "$PKI/ca-key.pem" -out "$PKI/ca.pem" -subj "/CN=centralino local CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    chmod 600 "$PKI/ca-key.pem"
    log "made a local CA in $PKI"
  fi
  local name
  for name in "${ROUTER_NAMES[@]}"; do issue_cert "$name" "URI:spiffe://centralino/router/$name,IP:127.0.0.1"; done
  for name in "${AGENT_NODE_NAMES[@]}"; do issue_cert "$name" "URI:spiffe://centralino/agent-node/$name,IP:127.0.0.1"; done
  issue_cert etcd-server "IP:127.0.0.1,DNS:localhost"
  issue_cert etcd-client "DNS:centralino-etcd-client"
}

metrics_of() {
  local i
  i=$(index_of "$1")
  case $(kind_of "$1") in
    etcd) echo "$(addr_of "$1")" ;;
    postgres) echo - ;;
    router) echo "127.0.0.1:$((9463 + i))" ;;
    agent-node) echo "127.0.0.1:$((9473 + i))" ;;
  esac
}

pid_file() { echo "$DIR/pids/$1.pid"; }
log_file() { echo "$DIR/logs/$1.log"; }

# The recorded pid of NAME when that process is alive (and is still the program we started).
live_pid() {
  local file pid
  file=$(pid_file "$1")
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # A recycled pid belongs to another program: not ours.
  if [[ -r /proc/$pid/cmdline ]]; then
    local program
    case $(kind_of "$1") in
      etcd) program=etcd ;;
      postgres) program=postgres ;;
      router) program=router ;;
      agent-node) program=agent-node ;;
    esac
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -- "$program" >/dev/null || return 1
  fi
  echo "$pid"
}

ensure_etcd() {
  if command -v etcd >/dev/null 2>&1; then
    return
  fi
  if [[ -x $ROOT/scripts/ensure_etcd.sh ]]; then
    "$ROOT/scripts/ensure_etcd.sh"
  else
    log "etcd is missing: installing the Debian package etcd-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server
  fi
  command -v etcd >/dev/null 2>&1 || die "etcd is still missing"
  # The Debian package starts a system etcd on 2379/2380; this cluster needs those ports.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
  fi
}

# The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin).
pg_bin() {
  local bin
  for bin in /usr/lib/postgresql/*/bin/postgres; do
    [[ -x $bin ]] && dirname "$bin"
  done | sort -V | tail -n 1 | grep .
}

ensure_postgres() {
  pg_bin >/dev/null || bash "$ROOT/scripts/ensure_postgres.sh"
  pg_bin >/dev/null || die "PostgreSQL is still missing (/usr/lib/postgresql/*/bin/postgres)"
}

# The prefix that runs a command as the postgres user when root (setpriv execs in place: the
# recorded pid stays the program's).
as_postgres() {
  if [[ $(id -u) == 0 ]]; then
    echo setpriv --reuid=postgres --regid=postgres --init-groups --
  fi
}

# A fresh PostgreSQL data directory with the role centralino and this `up`'s password.
init_postgres() {
  local pw_file=$CREDS/postgres.password dir
  [[ -s $pw_file ]] || die "no $pw_file"
  rm -rf "$PG_DATA" "$PG_SOCK"
  mkdir -p "$PG_DATA" "$PG_SOCK"
  chmod 700 "$PG_DATA" "$PG_SOCK"
  if [[ $(id -u) == 0 ]]; then
    # The postgres user must reach its directories: o+x on $DIR and every directory above.
    dir=$(cd "$DIR" && pwd)
    while [[ -n $dir && $dir != / ]]; do
      if [[ ! $(stat -c %A "$dir") =~ ^d........[xt]$ ]]; then
        chmod o+x "$dir"
        log "chmod o+x $dir (the postgres user reaches $PG_DATA)"
      fi
      dir=$(dirname "$dir")
    done
    chown postgres:postgres "$PG_DATA" "$PG_SOCK"
  fi
  # initdb reads the password from a file the postgres user can read: a copy in the socket
  # directory (mode 600, owned by postgres), removed right after.
  (umask 077 && cp "$pw_file" "$PG_SOCK/.pwfile")
  [[ $(id -u) == 0 ]] && chown postgres:postgres "$PG_SOCK/.pwfile"
  local initdb_rc=0
  if [[ $(id -u) == 0 ]]; then
    (cd "$PG_DATA" && runuser -u postgres -- "$(pg_bin)/initdb" -D "$PG_DATA" --auth=scram-sha-256 \
      --pwfile="$PG_SOCK/.pwfile" -U centralino >>"$(log_file postgres)" 2>&1) || initdb_rc=$?
  else
    (cd "$PG_DATA" && "$(pg_bin)/initdb" -D "$PG_DATA" --auth=scram-sha-256 \
      --pwfile="$PG_SOCK/.pwfile" -U centralino >>"$(log_file postgres)" 2>&1) || initdb_rc=$?
  fi
  rm -f "$PG_SOCK/.pwfile"
  if ((initdb_rc != 0)); then
    tail_logs postgres
    die "initdb failed (exit $initdb_rc)"
  fi
  log "made a PostgreSQL data directory in $PG_DATA (role centralino, password in $pw_file)"
}

pg_ready() {
  live_pid postgres >/dev/null || { log "postgres exited"; tail_logs postgres; exit 1; }
  pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2
}

# The routers' record URL (the password of the last `up`).
record_url() {
  local pw
  pw=$(<"$CREDS/postgres.password") || die "no $CREDS/postgres.password (run up)"
  printf 'postgres://centralino:%s@127.0.0.1:%s/postgres' "$pw" "$PG_PORT"
}

ensure_binaries() {
  only_etcd && return
  local missing=()
  for bin in router agent-node centralino; do
    [[ -x $BIN_DIR/$bin ]] || missing+=("$bin")
  done
  ((${#missing[@]} == 0)) && return
  if [[ ${CENTRALINO_SKIP_BUILD:-0} == 1 ]]; then
    die "missing in $BIN_DIR: ${missing[*]} (CENTRALINO_SKIP_BUILD=1, not building)"
  fi
  log "building ${missing[*]} (release)"
  (cd "$ROOT" && cargo build --release --bin router --bin agent-node --bin centralino)
  for bin in router agent-node centralino; do
    [[ -x $BIN_DIR/$bin ]] || die "$BIN_DIR/$bin still missing after the build (CARGO_TARGET_DIR?)"
  done
}

dev_mode() { [[ ${CENTRALINO_LOCAL_DEV_MODE:-0} == 1 ]]; }

base_config() { echo "${CENTRALINO_CONFIG_FILE:-$ROOT/deploy/config/centralino.example.toml}"; }

CREDS=$DIR/credentials

# The configuration the routers and agent-nodes run.
node_config() {
  if dev_mode; then base_config; else echo "$CREDS/node.toml"; fi
}

# Dev mode is only ever switched on by CENTRALINO_LOCAL_DEV_MODE=1: a CENTRALINO_NODE__DEV_MODE
# from the caller's environment would reach the nodes unnoticed, so it is refused.
check_dev_mode_setting() {
  if [[ -n ${CENTRALINO_NODE__DEV_MODE:-} ]]; then
    die "CENTRALINO_NODE__DEV_MODE is set: the local cluster runs without dev mode; opt in with CENTRALINO_LOCAL_DEV_MODE=1 instead"
  fi
  case ${CENTRALINO_LOCAL_DEV_MODE:-0} in
    0 | 1) ;;
    *) die "CENTRALINO_LOCAL_DEV_MODE must be 0 or 1, not '${CENTRALINO_LOCAL_DEV_MODE}'" ;;
  esac
}

# Rewrites a configuration (stdin) with this cluster's credentials (file $1: tab-separated
# lines "agent N SECRET", "admin_token TOKEN", "operator NAME DIGEST SCOPE", "shop_secret S",
# "visitor_secret S"). $2 = node: agents get password_hash lines; $2 = sim: plaintext password
# lines and [node] admin_token. Every password/password_hash of an agent, every [[operators]]
# table, [node] admin_token and [identity] shop_secret/visitor_secret of the input are dropped;
# the generated ones take their place (sections the input lacks are appended).
rewrite_config() {
  awk -F '\t' -v mode="$2" '
    FNR == NR {
      if ($1 == "agent") secret[$2] = $3
      else if ($1 == "admin_token") admin_token = $2
      else if ($1 == "operator") { ops++; op_name[ops] = $2; op_hash[ops] = $3; op_scope[ops] = $4 }
      else if ($1 == "shop_secret" || $1 == "visitor_secret") identity[$1] = $2
      next
    }
    function identity_lines() {
      print "shop_secret = \"" identity["shop_secret"] "\""
      print "visitor_secret = \"" identity["visitor_secret"] "\""
    }
    /^[ \t]*\[\[?[ \t]*[A-Za-z0-9_.-]+[ \t]*\]\]?[ \t]*(#.*)?$/ {
      header = $0
      sub(/#.*/, "", header)
      gsub(/[][ \t]/, "", header)
      section = header
      if (section == "operators") { skipping = 1; next }
      skipping = 0
      print
      if (section == "agents") {
        agent++
        if (!(agent in secret)) { print "cluster.sh: no secret for agent " agent > "/dev/stderr"; exit 3 }
        print (mode == "node" ? "password_hash" : "password") " = \"" secret[agent] "\""
      } else if (section == "identity") {
        seen_identity = 1
        identity_lines()
      } else if (section == "node") {
        seen_node = 1
        if (mode == "sim") print "admin_token = \"" admin_token "\""
      }
      next
    }
    # An [[operators]] table ends at the next header, blank line or comment line.
    skipping && /^[ \t]*(#.*)?$/ { skipping = 0 }
    skipping { next }
    section == "agents" && /^[ \t]*(password|password_hash)[ \t]*=/ { next }
    section == "identity" && /^[ \t]*(shop_secret|visitor_secret)[ \t]*=/ { next }
    section == "node" && /^[ \t]*admin_token[ \t]*=/ { next }
    { print }
    END {
      if (!seen_node && mode == "sim") { print ""; print "[node]"; print "admin_token = \"" admin_token "\"" }
      if (!seen_identity) { print ""; print "[identity]"; identity_lines() }
      for (i = 1; i <= ops; i++) {
        print ""
        print "[[operators]]"
        print "name = \"" op_name[i] "\""
        print "token_hash = \"" op_hash[i] "\""
        print "scopes = [\"" op_scope[i] "\"]"
      }
    }
  ' "$1" -
}

# The first lines of node.toml and sim.toml.
generated_header() {
  printf '# Generated by deploy/local/cluster.sh up from %s for %s.\n' "$(base_config)" "$1"
  printf '# This cluster'"'"'s own random credentials replace the agents'"'"' passwords, the operators, node.admin_token\n'
  printf '# and [identity] shop_secret/visitor_secret of that file (its comments on placeholders no longer apply).\n'
  printf '# Secret: readable by its owner only, made afresh at every cluster.sh up.\n\n'
}

# Prints a new operator token and its digest, tab-separated (`centralino new-token`).
new_token() {
  local out token digest
  out=$("$BIN_DIR/centralino" new-token) || die "centralino new-token failed"
  token=$(sed -n 1p <<<"$out")
  digest=$(sed -n 2p <<<"$out")
  [[ $token =~ ^[A-Za-z0-9_-]{20,}$ && $digest =~ ^sha256:[0-9a-f]{64}$ ]] ||
    die "centralino new-token printed something else than a token and its sha256: digest"
  printf '%s\t%s\n' "$token" "$digest"
}

# Makes this cluster's credentials in $CREDS (see the header): random per call. Secrets go
# to files only (umask 077), never to the log or a command line.
make_credentials() {
  local base old_umask
  base=$(base_config)
  [[ -r $base ]] || die "cannot read the configuration $base"
  old_umask=$(umask)
  umask 077
  rm -rf "$CREDS"
  mkdir -p "$CREDS"
  openssl rand -hex 24 >"$CREDS/postgres.password"
  if dev_mode; then
    cp "$base" "$CREDS/sim.toml"
    umask "$old_umask"
    log "dev mode (CENTRALINO_LOCAL_DEV_MODE=1): the nodes run $base as given, placeholder secrets accepted"
    return
  fi
  local table=$CREDS/.secrets agents count password hash admin reader
  # One random password per [[agents]] table of the configuration, in order.
  agents=$(grep -cE '^[ \t]*\[\[[ \t]*agents[ \t]*\]\][ \t]*(#.*)?$' "$base" || true)
  : >"$table"
  for ((count = 1; count <= agents; count++)); do
    password=$(openssl rand -hex 16)
    hash=$(printf '%s\n' "$password" | "$BIN_DIR/centralino" hash-password) ||
      die "centralino hash-password failed"
    [[ $hash == "\$argon2id\$"* ]] || die "centralino hash-password printed no argon2id hash"
    printf 'agent\t%d\t%s\t%s\n' "$count" "$hash" "$password" >>"$table"
  done
  admin=$(new_token)
  reader=$(new_token)
  {
    printf 'operator\tlocal-admin\t%s\tadmin\n' "${admin#*$'\t'}"
    printf 'operator\tlocal-reader\t%s\tread-only\n' "${reader#*$'\t'}"
    printf 'shop_secret\thex:%s\nvisitor_secret\thex:%s\n' "$(openssl rand -hex 32)" "$(openssl rand -hex 32)"
  } >>"$table"
  printf '%s\n' "${admin%%$'\t'*}" >"$CREDS/admin.token"
  printf '%s\n' "${reader%%$'\t'*}" >"$CREDS/reader.token"
  # node.toml: the hashes; sim.toml: the passwords and the reader's token.
  generated_header "the routers and agent-nodes (no dev mode)" >"$CREDS/node.toml"
  rewrite_config "$table" node <"$base" >>"$CREDS/node.toml" || die "could not write $CREDS/node.toml"
  {
    printf 'admin_token\t%s\n' "${reader%%$'\t'*}"
    awk -F '\t' -v OFS='\t' '$1 == "agent" { $3 = $4 } { print }' "$table"
  } >"$table.sim"
  generated_header "clients: centralino sim --config (plaintext passwords, local-reader's token as admin_token)" >"$CREDS/sim.toml"
  rewrite_config "$table.sim" sim <"$base" >>"$CREDS/sim.toml" || die "could not write $CREDS/sim.toml"
  rm -f "$table" "$table.sim"
  umask "$old_umask"
  log "made credentials in $CREDS: $agents agents' passwords (argon2id), operators local-admin and local-reader, identity secrets (not shown)"
}

# start/restart: the credentials of the last `up` (made now when there are none).
ensure_credentials() {
  if dev_mode; then
    [[ -f $CREDS/sim.toml ]] || make_credentials
  elif [[ ! -f $CREDS/node.toml || ! -f $CREDS/sim.toml ]]; then
    make_credentials
  fi
}

# Saves the settings shared by all processes (clock anchor included) for later restarts.
save_settings() {
  if [[ -n ${CENTRALINO_CLOCK__MODE:-} && -z ${CENTRALINO_CLOCK__ANCHOR_UNIX_MS:-} ]]; then
    CENTRALINO_CLOCK__ANCHOR_UNIX_MS=$(date +%s%3N)
    export CENTRALINO_CLOCK__ANCHOR_UNIX_MS
  fi
  local name
  {
    echo "# written by cluster.sh up; sourced by start/restart"
    printf 'export CENTRALINO_CONFIG_FILE=%q\n' "$(base_config)"
    printf 'export CENTRALINO_LOCAL_DEV_MODE=%q\n' "${CENTRALINO_LOCAL_DEV_MODE:-0}"
    while IFS= read -r name; do
      case $name in
        CENTRALINO_NODE__NODE_ID | CENTRALINO_NODE__GRPC_ADDR | CENTRALINO_NODE__ADVERTISE_ADDR | \
          CENTRALINO_NODE__METRICS_ADDR | CENTRALINO_NODE__DATA_DIR | CENTRALINO_CLUSTER__ETCD_ENDPOINTS | \
          CENTRALINO_NODE__INTERNAL_ADDR | CENTRALINO_CLUSTER__TLS__* | CENTRALINO_CLUSTER__ETCD_*_FILE | \
          CENTRALINO_NODE__DEV_MODE | CENTRALINO_RECORD__POSTGRES_URL) ;;
        CENTRALINO_*__* | RUST_LOG | CENTRALINO_LOG_FORMAT) printf 'export %s=%q\n' "$name" "${!name}" ;;
      esac
    done < <(compgen -e | sort)
  } >"$DIR/cluster.env"
}

load_settings() {
  if [[ -f $DIR/cluster.env ]]; then
    # shellcheck disable=SC1091
    source "$DIR/cluster.env"
  fi
}

# Starts one process in the background (its own session, so a Ctrl-C of the caller does not
# reach it) and records its pid.
start_process() {
  local name=$1 kind addr log_path
  kind=$(kind_of "$name")
  if live_pid "$name" >/dev/null; then
    log "$name is already running (pid $(live_pid "$name"))"
    return 0
  fi
  addr=$(addr_of "$name")
  log_path=$(log_file "$name")
  mkdir -p "$DIR/pids" "$DIR/logs"
  [[ $kind == postgres ]] || mkdir -p "$DIR/$name"
  local cmd=()
  local env_vars=()
  case $kind in
    etcd)
      local client_url="https://$addr" peer_url
      peer_url="https://127.0.0.1:$(etcd_peer_port "$name")"
      cmd=(etcd --name "$name" --data-dir "$DIR/$name"
        --listen-client-urls "$client_url" --advertise-client-urls "$client_url"
        --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "$peer_url"
        --initial-cluster "$ETCD_INITIAL_CLUSTER" --initial-cluster-state new
        --initial-cluster-token centralino-local
        --client-cert-auth --trusted-ca-file "$PKI/ca.pem"
        --cert-file "$PKI/etcd-server.pem" --key-file "$PKI/etcd-server-key.pem"
        --peer-client-cert-auth --peer-trusted-ca-file "$PKI/ca.pem"
        --peer-cert-file "$PKI/etcd-server.pem" --peer-key-file "$PKI/etcd-server-key.pem")
      ;;
    postgres)
      [[ -f $PG_DATA/PG_VERSION ]] || die "no PostgreSQL data in $PG_DATA (run up)"
      read -r -a cmd <<<"$(as_postgres)"
      cmd+=("$(pg_bin)/postgres" -D "$PG_DATA" -k "$PG_SOCK" -h 127.0.0.1 -p "$PG_PORT")
      ;;
    router | agent-node)
      local config dev=false
      config=$(node_config)
      dev_mode && dev=true
      cmd=("$BIN_DIR/$kind" --config "$config")
      env_vars=(
        "CENTRALINO_NODE__NODE_ID=$name"
        "CENTRALINO_NODE__GRPC_ADDR=$addr"
        "CENTRALINO_NODE__ADVERTISE_ADDR=$addr"
        "CENTRALINO_NODE__METRICS_ADDR=$(metrics_of "$name")"
        "CENTRALINO_CLUSTER__ETCD_ENDPOINTS=$ETCD_ENDPOINTS"
        "CENTRALINO_NODE__INTERNAL_ADDR=$(internal_of "$name")"
        "CENTRALINO_CLUSTER__TLS__CA_FILE=$PKI/ca.pem"
        "CENTRALINO_CLUSTER__TLS__CERT_FILE=$PKI/$name.pem"
        "CENTRALINO_CLUSTER__TLS__KEY_FILE=$PKI/$name-key.pem"
        "CENTRALINO_CLUSTER__ETCD_CA_FILE=$PKI/ca.pem"
        "CENTRALINO_CLUSTER__ETCD_CERT_FILE=$PKI/etcd-client.pem"
        "CENTRALINO_CLUSTER__ETCD_KEY_FILE=$PKI/etcd-client-key.pem"
        # Off unless CENTRALINO_LOCAL_DEV_MODE=1: node.toml holds this cluster's own secrets.
        "CENTRALINO_NODE__DEV_MODE=$dev"
      )
      if [[ $kind == router ]]; then
        env_vars+=("CENTRALINO_NODE__DATA_DIR=$DIR/$name" "CENTRALINO_RECORD__POSTGRES_URL=$(record_url)")
      fi
      ;;
  esac
  printf '\n==== %s start %s: %s\n' "$(date -Is)" "$name" "${cmd[*]}" >>"$log_path"
  # Not a job-control shell: setsid execs in place, so $! is the program's pid.
  env ${env_vars[@]+"${env_vars[@]}"} setsid "${cmd[@]}" >>"$log_path" 2>&1 </dev/null &
  echo $! >"$(pid_file "$name")"
  log "started $name (pid $!) on $addr"
}

drain_budget() { echo "${CENTRALINO_CLUSTER__DRAIN_BUDGET_SECS:-30}"; }

# The signal that stops NAME gracefully: PostgreSQL's fast shutdown is SIGINT (its SIGTERM
# waits for every client to disconnect), the others drain on SIGTERM.
stop_signal() { if [[ $(kind_of "$1") == postgres ]]; then echo INT; else echo TERM; fi; }

# Stops one process: SIGTERM, wait up to the drain budget + 5 s, then SIGKILL.
stop_process() {
  local name=$1 pid
  if ! pid=$(live_pid "$name"); then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  kill "-$(stop_signal "$name")" "$pid" 2>/dev/null || true
  wait_gone "$name" "$pid" $(($(drain_budget) + 5))
  rm -f "$(pid_file "$name")"
}

# Waits until pid is gone; SIGKILLs it after `limit` seconds.
wait_gone() {
  local name=$1 pid=$2 limit=$3 waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= limit * 10)); then
      log "$name (pid $pid) still running after ${limit}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

etcd_healthy() {
  local name
  for name in "${ETCD_NAMES[@]}"; do
    curl -sf --max-time 2 --cacert "$PKI/ca.pem" --cert "$PKI/etcd-client.pem" --key "$PKI/etcd-client-key.pem" \
      "https://$(addr_of "$name")/health" | grep '"health":"true"' >/dev/null || return 1
  done
}

metrics_up() { curl -sf --max-time 2 -o /dev/null "http://$(metrics_of "$1")/metrics"; }

# Prints the value of a metric (first sample, labels ignored unless given) from NAME's /metrics.
metric() {
  curl -sf --max-time 2 "http://$(metrics_of "$1")/metrics" |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { print $NF; exit }'
}

all_partitions_owned() {
  local unowned
  unowned=$(metric router-1 centralino_cluster_partitions_unowned) || return 1
  [[ -n $unowned ]] && awk -v v="$unowned" 'BEGIN { exit !(v + 0 == 0) }'
}

# Waits until `check` succeeds; on timeout prints the tails of the logs and fails.
wait_for() {
  local what=$1 check=$2 deadline=$((SECONDS + UP_TIMEOUT))
  until $check; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${UP_TIMEOUT}s waiting for $what"
      tail_logs
      return 1
    fi
    sleep 0.3
  done
  log "ready: $what"
}

nodes_ready() {
  local name
  for name in "${ROUTER_NAMES[@]}" "${AGENT_NODE_NAMES[@]}"; do
    live_pid "$name" >/dev/null || { log "$name exited"; tail_logs "$name"; exit 1; }
    metrics_up "$name" || return 1
  done
}

tail_logs() {
  local names=("$@") name
  ((${#names[@]})) || read -r -a names <<<"$(all_names)"
  for name in "${names[@]}"; do
    [[ -f $(log_file "$name") ]] || continue
    printf '\n---- tail of %s\n' "$(log_file "$name")" >&2
    tail -n 30 "$(log_file "$name")" >&2
  done
}

cmd_up() {
  local name
  for name in $(all_names); do
    if live_pid "$name" >/dev/null; then
      die "$name is already running (pid $(live_pid "$name")); run '$0 down' first"
    fi
  done
  ensure_etcd
  only_etcd || ensure_postgres
  ensure_binaries
  mkdir -p "$DIR/pids" "$DIR/logs"
  ensure_pki
  only_etcd || make_credentials
  save_settings
  for name in "${ETCD_NAMES[@]}"; do start_process "$name"; done
  if ! only_etcd; then
    init_postgres
    start_process postgres
  fi
  wait_for "etcd (3 members healthy)" etcd_healthy
  only_etcd && return
  wait_for "PostgreSQL accepts connections on $(addr_of postgres)" pg_ready
  for name in "${ROUTER_NAMES[@]}" "${AGENT_NODE_NAMES[@]}"; do start_process "$name"; done
  wait_for "routers' and agent-nodes' metrics" nodes_ready
  wait_for "router-1: centralino_cluster_partitions_unowned 0" all_partitions_owned
  log "cluster up in $DIR ($(dev_mode && echo 'DEV MODE, placeholder secrets accepted' || echo "dev mode off, credentials in $CREDS"); routers $(addr_of router-1),$(addr_of router-2),$(addr_of router-3); agent-nodes $(addr_of agent-node-1),$(addr_of agent-node-2); internal plane and etcd with mutual TLS, CA $PKI/ca.pem)"
}

cmd_down() {
  local name pid pids=() names=()
  # Nodes first (in parallel, so routers drain while etcd and PostgreSQL are still there),
  # etcd and PostgreSQL last.
  for name in "${ROUTER_NAMES[@]}" "${AGENT_NODE_NAMES[@]}" -- "${ETCD_NAMES[@]}" postgres; do
    if [[ $name == -- ]]; then
      down_wait pids names
      pids=() names=()
      continue
    fi
    if pid=$(live_pid "$name"); then
      kill "-$(stop_signal "$name")" "$pid" 2>/dev/null || true
      pids+=("$pid") names+=("$name")
    else
      rm -f "$(pid_file "$name")"
    fi
  done
  down_wait pids names
  log "down"
}

# Waits for the SIGTERMed processes (names/pids arrays given by name); removes pid files.
down_wait() {
  local -n _pids=$1 _names=$2
  local i deadline=$((SECONDS + $(drain_budget) + 5))
  for i in "${!_pids[@]}"; do
    wait_gone "${_names[$i]}" "${_pids[$i]}" $((deadline > SECONDS ? deadline - SECONDS : 0))
    rm -f "$(pid_file "${_names[$i]}")"
    log "stopped ${_names[$i]}"
  done
}

cmd_status() {
  local name pid state
  printf '%-14s %-8s %-6s %-18s %s\n' NAME PID STATE ADDRESS METRICS
  for name in $(all_names); do
    pid=$(cat "$(pid_file "$name")" 2>/dev/null || echo -)
    if live_pid "$name" >/dev/null; then state=alive; else state=dead; fi
    printf '%-14s %-8s %-6s %-18s %s\n' "$name" "$pid" "$state" "$(addr_of "$name")" "$(metrics_of "$name")"
  done
  only_etcd && return
  echo
  echo "router-1 cluster metrics:"
  curl -sf --max-time 2 "http://$(metrics_of router-1)/metrics" | grep '^centralino_cluster_' ||
    echo "  (router-1's metrics do not answer)"
}

main() {
  local command=${1:-}
  check_dev_mode_setting
  case $command in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    start | restart)
      [[ $# -eq 2 ]] || die "usage: $0 $command NAME"
      kind_of "$2" >/dev/null
      load_settings
      [[ $command == restart ]] && stop_process "$2"
      ensure_pki
      case $(kind_of "$2") in
        etcd) ;;
        postgres) ensure_postgres ;;
        *)
          ensure_binaries
          ensure_credentials
          ;;
      esac
      start_process "$2"
      if [[ $(kind_of "$2") == postgres ]]; then
        wait_for "PostgreSQL accepts connections on $(addr_of postgres)" pg_ready
      fi
      ;;
    stop)
      [[ $# -eq 2 ]] || die "usage: $0 stop NAME"
      kind_of "$2" >/dev/null
      load_settings
      stop_process "$2"
      ;;
    *)
      sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

if [[ ${CLUSTER_SH_LIB:-0} != 1 ]]; then
  main "$@"
fi
