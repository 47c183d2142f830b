#!/usr/bin/env bash
# Resident memory per established tunnel of a real hub (issue 10, docs/design.md "Per-tunnel
# memory budget"): `ikehub run` as the hub in a fresh network namespace (127.0.0.1, one
# template policy for 127.1.0.0/16, group 14, AES128-SHA1, DPD as profiles/hub.toml),
# `ikehub loadgen` brings up N spokes from 127.1.x.y and holds them; once the swarm reports all
# N up, the hub's VmRSS is read (the hub is not asked: a `show peers` of N rows every 0.1 s left
# its transient heap in the hub's RSS, about 1.1 KiB per tunnel at 10,000). Prints per N: RSS
# before, RSS with N tunnels up, KiB per tunnel ((up - before) / N), and the peak (VmHWM, which
# also holds the handshakes in flight). With --poll P it then asks the hub for `show peers` and
# `show sa` P times, as a monitoring script would, and prints the RSS after them (what each
# answer's transient heap left behind).
#
#   sudo benches/hub_memory.sh [--spokes "1000 10000"] [--shards K] [--hold S] [--poll P]
#
# Environment: IKEHUB_BIN (default target/release/ikehub) runs the hub, LOADGEN_BIN (default
# IKEHUB_BIN) the swarm. A benchmark, not a test: it asserts nothing about memory; exit 0 when
# every run brought every tunnel up, 1 otherwise, 2 on wrong usage or without root. The
# namespace (ikh-<pid>-<n>-hubmem), the processes and the temp directory are removed on exit,
# also on failure and Ctrl-C; every wait is bounded.
set -euo pipefail

SPOKES_LIST="1000"
SHARDS=1
HOLD=""
POLL=0
while [ $# -gt 0 ]; do
    case $1 in
        --spokes) SPOKES_LIST=$2; shift 2 ;;
        --shards) SHARDS=$2; shift 2 ;;
        --hold) HOLD=$2; shift 2 ;;
        --poll) POLL=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "benches/hub_memory.sh needs root (network namespace, TUN device)" >&2
    exit 2
fi
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${IKEHUB_BIN:-$HERE/target/release/ikehub}
LOADGEN=${LOADGEN_BIN:-$BIN}
[ -x "$BIN" ] || { echo "no ikehub binary at $BIN (cargo build --release)" >&2; exit 2; }

TMP=$(mktemp -d /tmp/ikh-hubmem.XXXXXX)
NS=""
HUB=""
SWARM=""
N=0
cleanup() {
    # `|| true`: a killed process's status must not end the script (set -e).
    [ -n "$SWARM" ] && { kill "$SWARM" 2>/dev/null; wait "$SWARM" 2>/dev/null || true; }
    [ -n "$HUB" ] && { kill "$HUB" 2>/dev/null; wait "$HUB" 2>/dev/null || true; }
    [ -n "$NS" ] && { ip netns del "$NS" 2>/dev/null || true; }
    SWARM=""; HUB=""; NS=""
}
trap 'cleanup; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/psk"
cat > "$TMP/hub.toml" <<EOF
[system]
control-socket = "$TMP/hub.sock"
shards = $SHARDS

[interface.wan]
address = "127.0.0.1"

[tunnel-device]
name = "ikehub0"
routes = false

[ipsec-transform.AES128_SHA1]
esp-encryption = "aes-cbc-128"
esp-authentication = "hmac-sha1"

[isakmp-transform.G14]
encryption = "aes-cbc-128"
hash = "sha1"
dh-group = 14

[ipsec-policy-isakmp.Spokes]
interface = "wan"
peer = "127.1.0.0/16"
preshared-key-file = "$TMP/psk"
isakmp-transform = ["G14"]
ipsec-transform = ["AES128_SHA1"]
initiate = "never"
dpd = { interval-seconds = 30, timeout-seconds = 120 }
protected-network = [ { local = "198.51.100.0/24", remote = "127.1.0.0/16" } ]
EOF

FAILED=0
echo "spokes  shards  rss_before_kib  rss_up_kib  kib_per_tunnel  peak_kib  rss_after_polls_kib"
for spokes in $SPOKES_LIST; do
    N=$((N + 1))
    NS="ikh-$$-$N-hubmem"
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    RUST_LOG=${RUST_LOG:-warn} ip netns exec "$NS" "$BIN" run -c "$TMP/hub.toml" \
        > "$TMP/hub.log" 2>&1 &
    HUB=$!
    for _ in $(seq 300); do
        "$BIN" show peers --control "$TMP/hub.sock" > /dev/null 2>&1 && break
        kill -0 "$HUB" 2>/dev/null || { cat "$TMP/hub.log" >&2; exit 1; }
        sleep 0.1
    done
    before=$(kib "$HUB" VmRSS)
    # Long enough to bring every spoke up at a modest rate and read the hub while all are up.
    hold=${HOLD:-$((spokes / 100 + 60))}
    ip netns exec "$NS" "$LOADGEN" loadgen --hub 127.0.0.1 --spokes "$spokes" \
        --sources 127.1.0.0/16 --psk-file "$TMP/psk" --ike-group 14 --rate 500 \
        --max-in-flight 100 --hold "$hold" --json > "$TMP/report.json" 2> "$TMP/swarm.log" &
    SWARM=$!
    up=""
    for _ in $(seq $((hold * 10))); do
        # The swarm's progress line: "[   6.0s] up 2000/2000, handshaking 0, ...".
        n=$(grep -o 'up [0-9]*/' "$TMP/swarm.log" 2>/dev/null | tail -n 1 | tr -dc 0-9 || true)
        n=${n:-0}
        if [ "$n" -ge "$spokes" ]; then
            sleep 2
            up=$(kib "$HUB" VmRSS)
            break
        fi
        kill -0 "$SWARM" 2>/dev/null || break
        sleep 0.1
    done
    peak=$(kib "$HUB" VmHWM)
    if [ -z "$up" ]; then
        echo "$spokes spokes: not all up (see the swarm's report)" >&2
        tail -n 5 "$TMP/swarm.log" >&2
        FAILED=1
    else
        per=$(awk -v a="$before" -v b="$up" -v n="$spokes" 'BEGIN { printf "%.2f", (b - a) / n }')
        polled=-
        if [ "$POLL" -gt 0 ]; then
            for _ in $(seq "$POLL"); do
                "$BIN" show peers --control "$TMP/hub.sock" > /dev/null
                "$BIN" show sa --control "$TMP/hub.sock" > /dev/null
            done
            polled=$(kib "$HUB" VmRSS)
        fi
        printf '%6d  %6d  %14d  %10d  %14s  %8d  %19s\n' "$spokes" "$SHARDS" "$before" "$up" \
            "$per" "$peak" "$polled"
    fi
    cleanup
done
exit "$FAILED"
