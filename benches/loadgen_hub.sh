#!/usr/bin/env bash
# Hub setup cost under a spoke swarm (issue 10): `ikehub run` as the hub in a fresh network
# namespace (interface 127.0.0.1, one template policy for 127.1.0.0/16), `ikehub loadgen`
# against it from 127.1.x.y source addresses in the same namespace, for each DH group; prints
# per run: tunnels up, setup rate (tunnels/s), latency p50/p99, retransmissions, and the hub's
# CPU per tunnel (utime + stime of the hub process from /proc/PID/stat, before and after the
# swarm, divided by the tunnels up; main mode + quick mode + the two deletes) and its resident
# memory before the swarm and at its peak (VmHWM): with --hold long enough for every tunnel to
# be up at once, (peak - before) / N is the hub's memory per tunnel.
#
#   sudo benches/loadgen_hub.sh [--spokes N] [--groups "2 14"] [--runs K] [--rate R]
#                               [--in-flight N] [--hold S] [--pin] [--json]
#
# --pin puts the hub on CPU 0 and the swarm on the other CPUs (taskset), so that the hub's CPU
# time is one core's. It is a benchmark, not a test: it asserts nothing about speed; exit 0 when
# every run brought every tunnel up, 1 otherwise, 2 on wrong usage or without root. The
# namespace (ikh-<pid>-<n>-lgbench), the hub and the temp directory are removed on exit, also on
# failure and Ctrl-C; every wait is bounded.
set -euo pipefail

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    echo "Environment: IKEHUB_BIN (default target/release/ikehub)."
}

SPOKES=1000
GROUPS_LIST="2 14"
RUNS=1
RATE=1000
IN_FLIGHT=200
PIN=0
JSON=0
HOLD=0
while [ $# -gt 0 ]; do
    case $1 in
        --spokes) SPOKES=$2; shift 2 ;;
        --groups) GROUPS_LIST=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --in-flight) IN_FLIGHT=$2; shift 2 ;;
        --hold) HOLD=$2; shift 2 ;;
        --pin) PIN=1; shift ;;
        --json) JSON=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "benches/loadgen_hub.sh needs root (network namespace, TUN device)" >&2
    exit 2
fi
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${IKEHUB_BIN:-$HERE/target/release/ikehub}
[ -x "$BIN" ] || { echo "no ikehub binary at $BIN (cargo build --release)" >&2; exit 2; }
if [ "$SPOKES" -gt 65000 ]; then
    echo "--spokes: at most 65000 (127.1.0.0/16)" >&2
    exit 2
fi

TMP=$(mktemp -d /tmp/ikh-lgbench.XXXXXX)
NS=""
HUB=""
N=0
cleanup() {
    if [ -n "$HUB" ] && kill -0 "$HUB" 2>/dev/null; then
        kill -TERM "$HUB" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$HUB" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$HUB" 2>/dev/null || true
    fi
    HUB=""
    if [ -n "$NS" ]; then
        for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        ip netns del "$NS" 2>/dev/null || true
    fi
    NS=""
}
trap 'cleanup; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
peak_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
HUB_CPU=""
SWARM_CPUS=""
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    HUB_CPU="taskset -c 0"
    SWARM_CPUS="taskset -c 1-$(($(nproc) - 1))"
fi

hub_profile() {
    cat <<EOF
[system]
control-socket = "$TMP/hub.sock"
shards = 1

[interface.wan]
address = "127.0.0.1"

[tunnel-device]
name = "ikehub0"
mtu = 1400
routes = false

[ipsec-transform.AES128_SHA1]
esp-encryption = "aes-cbc-128"
esp-authentication = "hmac-sha1"

[isakmp-transform.G$1]
encryption = "aes-cbc-128"
hash = "sha1"
dh-group = $1

[ipsec-policy-isakmp.Spokes]
interface = "wan"
peer = "127.1.0.0/16"
preshared-key-file = "$TMP/psk"
isakmp-transform = ["G$1"]
ipsec-transform = ["AES128_SHA1"]
initiate = "never"
nat-traversal = true
protected-network = [ { local = "198.51.100.0/24", remote = "127.1.0.0/16" } ]
EOF
}

head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/psk"
FAILED=0
RESULTS=()
for g in $GROUPS_LIST; do
    for run in $(seq "$RUNS"); do
        N=$((N + 1))
        NS="ikh-$$-$N-lgbench"
        ip netns add "$NS"
        ip -n "$NS" link set lo up
        hub_profile "$g" > "$TMP/hub.toml"
        RUST_LOG=${RUST_LOG:-warn} ip netns exec "$NS" $HUB_CPU "$BIN" run -c "$TMP/hub.toml" \
            > "$TMP/hub.log" 2>&1 &
        HUB=$!
        for _ in $(seq 300); do
            "$BIN" show peers --control "$TMP/hub.sock" > /dev/null 2>&1 && break
            kill -0 "$HUB" 2>/dev/null || { cat "$TMP/hub.log" >&2; exit 1; }
            sleep 0.1
        done
        cpu0=$(cpu_ticks "$HUB")
        rss0=$(rss_kib "$HUB")
        echo "group $g run $run: $SPOKES spokes, rate $RATE/s, $IN_FLIGHT in flight" >&2
        set +e
        ip netns exec "$NS" $SWARM_CPUS "$BIN" loadgen --hub 127.0.0.1 --spokes "$SPOKES" \
            --sources 127.1.0.0/16 --psk-file "$TMP/psk" --ike-group "$g" --rate "$RATE" \
            --max-in-flight "$IN_FLIGHT" --hold "$HOLD" --json > "$TMP/report.json"
        rc=$?
        set -e
        cpu1=$(cpu_ticks "$HUB")
        rss1=$(peak_kib "$HUB")
        [ "$rc" = 0 ] || FAILED=1
        RESULTS+=("$(python3 - "$TMP/report.json" "$g" "$run" "$cpu0" "$cpu1" "$CLK_TCK" \
            "$rss0" "$rss1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
g, run, c0, c1, tck, rss0, rss1 = sys.argv[2:]
cpu_ms = (int(c1) - int(c0)) * 1000.0 / int(tck)
up = r["up"]
lat = r["latency_ms"] or {"p50": 0, "p99": 0}
print(json.dumps({
    "group": int(g), "run": int(run), "spokes": r["spokes"], "up": up,
    "setup_rate": round(r["setup_rate"], 1), "p50_ms": lat["p50"], "p99_ms": lat["p99"],
    "retransmissions": r["retransmissions"], "hub_cpu_ms": round(cpu_ms, 1),
    "hub_cpu_ms_per_tunnel": round(cpu_ms / up, 3) if up else None,
    "hub_rss_kib_before": int(rss0), "hub_rss_kib_peak": int(rss1),
    "hub_kib_per_tunnel_at_peak": round((int(rss1) - int(rss0)) / up, 2) if up else None,
    "failures": r["failures"],
}))
PY
)")
        cleanup
    done
done

if [ "$JSON" = 1 ]; then
    printf '%s\n' "${RESULTS[@]}" | python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in sys.stdin], indent=2))'
else
    printf '%-6s %-4s %-11s %-11s %-10s %-10s %-8s %-14s %-10s\n' group run up "tunnels/s" "p50 ms" "p99 ms" retrans "hub ms/tunnel" "hub RSS KiB before -> peak"
    for r in "${RESULTS[@]}"; do
        python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print("%-6s %-4s %-11s %-11s %-10s %-10s %-8s %-14s %s -> %s" % (r["group"], r["run"],
      "%d/%d" % (r["up"], r["spokes"]), r["setup_rate"], r["p50_ms"], r["p99_ms"],
      r["retransmissions"], r["hub_cpu_ms_per_tunnel"], r["hub_rss_kib_before"],
      r["hub_rss_kib_peak"]))' "$r"
    done
fi
exit $FAILED
