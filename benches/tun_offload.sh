#!/usr/bin/env bash
# TUN offload on vs off, ikehub <-> ikehub (the manual ToBerne pair of profiles/toberne-*.toml,
# AES-128-CBC + HMAC-SHA1), raw ESP and ESP-in-UDP, iperf3 TCP 1 and 4 streams, A -> B.
# A benchmark, not a test: run it as root on a quiet machine and compare the columns. Besides
# Gbit/s it prints the CPU time both daemons spent per MB carried (utime + stime from /proc),
# which says more than throughput when other work shares the cores.
#
#   cargo build --release && sudo benches/tun_offload.sh [seconds] [runs]
#
# Needs ip, iperf3. Creates namespaces ikh-$$-N-tunoff-{a,b} and removes them on exit.
set -euo pipefail

SECS=${1:-5}
RUNS=${2:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${IKEHUB_BIN:-$ROOT/target/release/ikehub}
TMP=$(mktemp -d /tmp/ikh-tunoff.XXXXXX)
NA="ikh-$$-1-tunoff-a"
NB="ikh-$$-2-tunoff-b"
PIDS=()

cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
    ip netns pids "$NA" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns pids "$NB" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$NA" 2>/dev/null || true
    ip netns del "$NB" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$NA"
ip netns add "$NB"
ip -n "$NA" link set lo up
ip -n "$NB" link set lo up
ip -n "$NA" link add wan0 type veth peer name wan0 netns "$NB"
ip -n "$NA" addr add 192.0.2.1/24 dev wan0
ip -n "$NB" addr add 192.0.2.2/24 dev wan0
ip -n "$NA" link set wan0 up
ip -n "$NB" link set wan0 up
ip -n "$NA" addr add 198.51.100.1/32 dev lo
ip -n "$NB" addr add 203.0.113.1/32 dev lo

# profile SIDE ENCAP OFFLOAD -> path
profile() {
    local side=$1 encap=$2 offload=$3 out="$TMP/$1-$2-$3.toml"
    sed -e "s|^control-socket = .*|control-socket = \"$TMP/$side.sock\"|" \
        -e "s|^encapsulation = \"esp\"|encapsulation = \"$encap\"|" \
        -e "s|^\[tunnel-device\]|[tunnel-device]\noffload = $offload\nsource-address = \"$4\"|" \
        "$ROOT/profiles/toberne-$side.toml" >"$out"
    echo "$out"
}

wait_route() {
    for _ in $(seq 200); do
        ip -n "$1" route get "$2" 2>/dev/null | grep -q "dev ikehub0" && return 0
        sleep 0.1
    done
    echo "no route to $2 in $1" >&2
    return 1
}

# cpu_ticks PID...: utime + stime of the processes, in clock ticks.
cpu_ticks() {
    local t=0 p
    for p in "$@"; do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}
HZ=$(getconf CLK_TCK)

printf '%-6s %-8s %-8s %s\n' encap offload streams "Gbit/s, daemon CPU ms per MB (each run)"
for encap in esp udp; do
    for offload in false true; do
        pa=$(profile a $encap $offload 198.51.100.1)
        pb=$(profile b $encap $offload 203.0.113.1)
        ip netns exec "$NA" "$BIN" run -c "$pa" >"$TMP/a.log" 2>&1 &
        PIDS+=($!)
        ip netns exec "$NB" "$BIN" run -c "$pb" >"$TMP/b.log" 2>&1 &
        PIDS+=($!)
        wait_route "$NA" 203.0.113.1
        wait_route "$NB" 198.51.100.1
        for streams in 1 4; do
            line=""
            for _ in $(seq "$RUNS"); do
                ip netns exec "$NB" iperf3 -s -1 -B 203.0.113.1 >/dev/null 2>&1 &
                srv=$!
                sleep 0.3
                t0=$(cpu_ticks "${PIDS[@]}")
                res=$(ip netns exec "$NA" timeout $((SECS + 20)) iperf3 -c 203.0.113.1 \
                    -B 198.51.100.1 -t "$SECS" -P "$streams" -J 2>/dev/null |
                    python3 -c 'import json,sys; s=json.load(sys.stdin)["end"]["sum_received"]; print(s["bits_per_second"], s["bytes"])' ||
                    echo 0 0)
                t1=$(cpu_ticks "${PIDS[@]}")
                wait "$srv" 2>/dev/null || true
                line="$line $(awk -v r="$res" -v t=$((t1 - t0)) -v hz="$HZ" 'BEGIN {
                    split(r, a, " "); mb = a[2] / 1e6
                    printf "%.2f/%.2f", a[1] / 1e9, (mb > 0 ? t * 1000 / hz / mb : 0) }')"
            done
            printf '%-6s %-8s %-8s %s\n' $encap $offload $streams "$line"
        done
        for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
        PIDS=()
        sleep 0.5
    done
done
