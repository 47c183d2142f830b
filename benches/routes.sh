#!/usr/bin/env bash
# Route installation and removal through rtnetlink (issue 13 point 5): a daemon in a throw-away
# namespace with N manually keyed policies (remote 203.0.113.i/32 each, so N routes into the
# TUN device); prints the time from start until all N routes are in the table and from SIGTERM
# until the daemon has exited with none left, per run.
#
#   sudo benches/routes.sh [--policies N] [--runs R]   (N 1..256, default 250; R default 3)
#
# IKEHUB_BIN selects the binary (default target/release/ikehub), so two builds compare with
# the same command. It asserts nothing (a benchmark). The namespace (ikh-<pid>-0-routes) and
# the temp directory are removed on exit, also on failure or interrupt; each wait is bounded.
set -euo pipefail

POLICIES=250
RUNS=3
while [ $# -gt 0 ]; do
    case "$1" in
    --policies) [[ ${2:-} =~ ^[1-9][0-9]{0,2}$ ]] && [ "$2" -le 256 ] || { echo "--policies 1..256" >&2; exit 2; }
        POLICIES=$2; shift 2 ;;
    --runs) [[ ${2:-} =~ ^[1-9][0-9]?$ ]] || { echo "--runs 1..99" >&2; exit 2; }
        RUNS=$2; shift 2 ;;
    *) echo "usage: benches/routes.sh [--policies N] [--runs R]" >&2; exit 2 ;;
    esac
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${IKEHUB_BIN:-$REPO/target/release/ikehub}
[ -x "$BIN" ] || { echo "routes.sh: no ikehub binary at $BIN" >&2; exit 2; }
NS=ikh-$$-0-routes
DIR=$(mktemp -d /tmp/ikehub-routes-bench.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 192.0.2.1/32 dev lo
ip -n "$NS" addr add 198.51.100.1/32 dev lo

{
    printf '[system]\ncontrol-socket = "%s/ikehub.sock"\n\n' "$DIR"
    printf '[interface.wan]\naddress = "192.0.2.1"\n\n'
    printf '[tunnel-device]\nname = "ikehub0"\nmtu = 1400\nsource-address = "198.51.100.1"\n\n'
    printf '[ipsec-transform.T]\nesp-encryption = "aes-cbc-128"\nesp-authentication = "hmac-sha1"\nmode = "tunnel"\n'
    for ((i = 0; i < POLICIES; i++)); do
        k=$(printf '%02x' "$i")
        printf '\n[ipsec-policy-manual.P%d]\ninterface = "wan"\npeer = "192.0.2.2"\ntransform = "T"\n' "$i"
        printf 'encapsulation = "esp"\nprotected-network = [ { local = "198.51.100.1", remote = "203.0.113.%d" } ]\n' "$i"
        printf 'inbound = { esp-spi = %d, esp-encryption-key = "0x%s", esp-authentication-key = "0x%s" }\n' \
            $((10000 + 2 * i)) "$(printf "$k%.0s" {1..16})" "$(printf "$k%.0s" {1..20})"
        printf 'outbound = { esp-spi = %d, esp-encryption-key = "0x%s", esp-authentication-key = "0x%s" }\n' \
            $((10001 + 2 * i)) "$(printf "$k%.0s" {1..16})" "$(printf "$k%.0s" {1..20})"
    done
} >"$DIR/ikehub.toml"

now_ms() { date +%s%3N; }
routes() { ip -n "$NS" route show dev ikehub0 2>/dev/null | grep -c '^203\.0\.113\.' || true; }

echo "routes.sh: $POLICIES policies, $RUNS runs, $BIN"
for ((r = 1; r <= RUNS; r++)); do
    t0=$(now_ms)
    ip netns exec "$NS" "$BIN" run -c "$DIR/ikehub.toml" >"$DIR/daemon.log" 2>&1 &
    PID=$!
    deadline=$((t0 + 60000))
    until [ "$(routes)" -eq "$POLICIES" ]; do
        [ "$(now_ms)" -lt "$deadline" ] && kill -0 "$PID" 2>/dev/null || {
            echo "run $r: $(routes) of $POLICIES routes; log:" >&2; tail -20 "$DIR/daemon.log" >&2; exit 1; }
        sleep 0.01
    done
    t1=$(now_ms)
    kill -TERM "$PID"
    for ((w = 0; w < 3000; w++)); do kill -0 "$PID" 2>/dev/null || break; sleep 0.01; done
    wait "$PID" 2>/dev/null || true
    PID=
    t2=$(now_ms)
    echo "run $r: start -> $POLICIES routes $((t1 - t0)) ms; SIGTERM -> exit $((t2 - t1)) ms, routes left $(routes)"
    echo "  WARN lines in the log: $(grep -c 'WARN' "$DIR/daemon.log" || true)"
done
