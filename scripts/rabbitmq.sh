# A private RabbitMQ node for scripts/services (sourced by it; uses its ROOT, RMQ, PKI, say,
# pick_port and port_free).
#
# The node runs from Debian's package but shares nothing with a system RabbitMQ: its own node
# name, epmd port, distribution ports, cookie (HOME), mnesia and logs under $RMQ. AMQP is
# offered over TLS only (the development PKI's server certificate, verify_peer and
# fail_if_no_peer_cert), and members log in with EXTERNAL: the user name is the SAN URI of
# their certificate, the same identity the bus reads. The management API listens on loopback
# for the bus, which keeps users, permissions and queues in step with its registry.

RMQ_LIB=/usr/lib/rabbitmq/bin

install_rabbitmq() {
    [ -x "$RMQ_LIB/rabbitmq-server" ] && return
    if [ "$(id -u)" -ne 0 ]; then
        say "RabbitMQ is not installed; run: sudo apt-get install rabbitmq-server"
        exit 1
    fi
    say "installing RabbitMQ from Debian's packages"
    # The package's postinst starts a system node unless policy-rc.d forbids it.
    local policy=/usr/sbin/policy-rc.d ours=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && ours=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    [ -n "$ours" ] && rm -f "$policy"
    [ -x "$RMQ_LIB/rabbitmq-server" ] || { say "RabbitMQ did not install"; exit 1; }
}

# The development PKI RabbitMQ trusts and presents, made by simpul itself (`certs init`), so a
# bus given these certificates is trusted by the broker and logs in as the PKI's server SAN.
ensure_pki() {
    [ -f "$PKI/ca.pem" ] && [ -f "$PKI/server.pem" ] && return
    local bin=target/debug/simpul
    [ -x "$bin" ] || cargo build -q --bin simpul
    "$bin" certs init --dir "$PKI" --registry registry.toml >/dev/null
}

# Every rabbitmq command sees the same private node.
rmq_env() {
    export HOME="$RMQ" RABBITMQ_HOME=/usr/lib/rabbitmq
    export RABBITMQ_NODENAME="simpul-$(cat "$RMQ/ports" | cut -d' ' -f1)@localhost"
    export RABBITMQ_CONFIG_FILE="$RMQ/rabbitmq.conf"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ/enabled_plugins"
    export RABBITMQ_MNESIA_BASE="$RMQ/mnesia" RABBITMQ_LOG_BASE="$RMQ/log"
    export RABBITMQ_PID_FILE="$RMQ/pid" RABBITMQ_PLUGINS_EXPAND_DIR="$RMQ/plugins-expand"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ/advanced.config"
    read -r _ amqps mgmt dist epmd <"$RMQ/ports"
    export RABBITMQ_DIST_PORT="$dist" ERL_EPMD_PORT="$epmd" ERL_EPMD_ADDRESS=127.0.0.1
    # The CLI tools' own distribution ports, away from the node's.
    export RABBITMQ_CTL_DIST_PORT_MIN=$((dist + 1)) RABBITMQ_CTL_DIST_PORT_MAX=$((dist + 10))
}

rmq_port() { cut -d' ' -f"$1" "$RMQ/ports"; }
rmq_admin() { echo "simpul-admin:$(cat "$RMQ/admin-password")"; }
rmq_up() {
    [ -f "$RMQ/ports" ] &&
        curl -fsS -o /dev/null -u "$(rmq_admin)" "http://127.0.0.1:$(rmq_port 3)/api/overview" 2>/dev/null
}

write_rabbitmq_config() {
    cat >"$RMQ/rabbitmq.conf" <<EOF
listeners.tcp = none
listeners.ssl.default = 127.0.0.1:$(rmq_port 2)
auth_mechanisms.1 = EXTERNAL
ssl_cert_login_from = subject_alternative_name
ssl_cert_login_san_type = uri
ssl_cert_login_san_index = 0
distribution.listener.interface = 127.0.0.1
management.tcp.ip = 127.0.0.1
management.tcp.port = $(rmq_port 3)
default_vhost = simpul
default_user = simpul-admin
default_pass = $(cat "$RMQ/admin-password")
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
loopback_users = none
# The management API closes a connection by name only once its statistics list it: a short
# interval lets a revoked member's connection go within a second or two.
collect_statistics_interval = 500
log.console = false
log.file.level = warning
EOF
    echo '[rabbitmq_auth_mechanism_ssl,rabbitmq_management].' >"$RMQ/enabled_plugins"
    # TLS in full here (it cannot be split between the two files): the CRL check needs
    # crl_cache, which rabbitmq.conf cannot express. The broker reads the CRL of the PKI's CA
    # from $RMQ/crl/<issuer hash>.r0 at each handshake; a bus given SIMPUL_AMQP_CRL keeps it
    # current. Without the file, best_effort accepts the certificate.
    mkdir -p "$RMQ/crl"
    cat >"$RMQ/advanced.config" <<EOF
[{rabbit, [{ssl_options, [
    {cacertfile, "$PKI/ca.pem"},
    {certfile, "$PKI/server.pem"},
    {keyfile, "$PKI/server.key"},
    {verify, verify_peer},
    {fail_if_no_peer_cert, true},
    {crl_check, best_effort},
    {crl_cache, {ssl_crl_hash_dir, {internal, [{dir, "$RMQ/crl"}]}}}
]}]}].
EOF
}

start_rabbitmq() {
    install_rabbitmq
    ensure_pki
    rmq_up && return
    # --fresh (scripts/test): what earlier runs left, thousands of test vhosts with their
    # queues and messages, is of no use, and rebuilding it can slow the start past its wait.
    # The admin user comes back from rabbitmq.conf's default_user on the fresh database.
    # Without it (a test restarting its broker) the data stays.
    [ "${1:-}" = "--fresh" ] && rm -rf "$RMQ/mnesia"
    mkdir -p "$RMQ/log"
    [ -f "$RMQ/admin-password" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$RMQ/admin-password"
    local p
    if [ ! -f "$RMQ/ports" ]; then
        # id, amqps, management, distribution, epmd: each free now.
        echo "$RANDOM $(pick_port) $(pick_port) $(pick_port) $(pick_port)" >"$RMQ/ports"
    fi
    for p in 2 3 4 5; do
        if ! port_free "$(rmq_port "$p")"; then
            echo "$RANDOM $(pick_port) $(pick_port) $(pick_port) $(pick_port)" >"$RMQ/ports"
            break
        fi
    done
    write_rabbitmq_config
    (
        rmq_env
        # epmd started by us, and listening before the node starts (else the node starts a
        # daemon of its own that nothing stops): it outlives the node, so stop() kills it.
        setsid epmd -port "$ERL_EPMD_PORT" -address 127.0.0.1 >/dev/null 2>&1 9>&- &
        echo $! >"$RMQ/epmd.pid"
        for _ in $(seq 1 100); do port_free "$ERL_EPMD_PORT" || break; sleep 0.05; done
        # In its own directory: a node that dies writes its crash dumps (MnesiaCore.*) to its
        # working directory, which would otherwise be the caller's (the repository).
        cd "$RMQ"
        setsid "$RMQ_LIB/rabbitmq-server" >"$RMQ/log/console.log" 2>&1 9>&- </dev/null &
        echo $! >"$RMQ/server.pid"
    )
    for _ in $(seq 1 600); do
        rmq_up && return
        if ! kill -0 "$(cat "$RMQ/server.pid")" 2>/dev/null; then break; fi
        sleep 0.1
    done
    say "RabbitMQ did not start; its log:"
    tail -n 30 "$RMQ/log/console.log" >&2
    tail -n 30 "$RMQ/log"/*.log >&2 2>/dev/null || true
    exit 1
}

print_rabbitmq_env() {
    rmq_up || { say "RabbitMQ is not running; run: scripts/services start"; exit 1; }
    echo "export SIMPUL_AMQP=amqps://localhost:$(rmq_port 2)/simpul"
    echo "export SIMPUL_AMQP_MANAGEMENT=http://$(rmq_admin)@127.0.0.1:$(rmq_port 3)"
    echo "export SIMPUL_AMQP_CERTS=$PKI"
    echo "export SIMPUL_AMQP_CRL=$RMQ/crl/$(openssl x509 -hash -noout -in "$PKI/ca.pem").r0"
}

# The processes of this node: the server script, the Erlang VM it started (which does not
# carry the node name on its command line, but does carry -home $RMQ), and every epmd on this
# node's epmd port.
rmq_pids() {
    local p epmd
    cat "$RMQ/server.pid" 2>/dev/null || true
    pgrep -f -- "-home $RMQ -" || true
    epmd=$(rmq_port 5)
    cat "$RMQ/epmd.pid" 2>/dev/null || true
    for p in $(pgrep -x epmd); do
        if { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qx "ERL_EPMD_PORT=$epmd"; then
            echo "$p"
        fi
    done
}

stop_rabbitmq() {
    [ -f "$RMQ/ports" ] || return 0
    local pids signal=TERM p alive
    pids=$(rmq_pids | sort -u)
    [ "${1:-}" = "--immediate" ] && signal=KILL
    # The VM stops cleanly on SIGTERM; epmd and the script go with it or with this.
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill -"$signal" $pids 2>/dev/null
    for _ in $(seq 1 300); do
        alive=
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    [ -n "$alive" ] && kill -KILL $pids 2>/dev/null
    rm -f "$RMQ/server.pid" "$RMQ/epmd.pid"
    return 0
}
