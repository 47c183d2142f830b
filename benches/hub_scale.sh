#!/usr/bin/env bash
# The hub at scale (issue 10): `ikehub run` as the hub in a fresh network namespace (pinned to
# CPU 0 with --pin), `ikehub loadgen --reconnect` against it from 127.1.x.y source addresses in
# the same namespace (on the other CPUs with --pin; 127.0.0.0/8 is local only on the `lo` of the
# namespace it is in), and one real `ikehub run` spoke in a second namespace behind a veth; for
# each N of --spokes and each DH group of --groups, one run:
#
#  1. setup: the swarm brings N tunnels up; tunnels/s and latency (the swarm's report), the
#     hub's CPU per tunnel (utime + stime from /proc/PID/stat, from before the swarm to all up,
#     main mode + quick mode; the swarm's DPD probes, one per spoke per --dpd seconds, are in
#     it too), the swarm's CPU per tunnel over the same time (it shares the machine: without
#     --pin, what the swarm spends per tunnel is taken from the hub's cores), the hub's RSS
#     before the swarm and with all N up, KiB per tunnel, and the datagrams the kernel dropped
#     at the hub's IKE sockets (`show counters` ike_socket_drops);
#  2. restart: the hub is stopped (--restart-signal TERM: deletes sent, the spokes re-initiate
#     at once; KILL: a crash, the spokes find out by DPD) and started again; prints the time
#     from the new hub's start to all N back (the swarm's clock of its last tunnel back,
#     against the hub's start on the same wall clock), the swarm's recovery time (first tunnel
#     lost to last one back), the retransmissions since the first loss, the new hub's CPU per
#     tunnel, and the issue's bound N x CPU per tunnel / hub cores + 20% (CPU per tunnel from
#     step 1);
#  3. reload: a ping every 10 ms through the real spoke's tunnel while the hub reloads with one
#     other policy changed (its PSK); prints the reload time the daemon reports and the pings
#     lost, and the swarm's tunnels lost by the reload (must be 0).
#
#   sudo benches/hub_scale.sh [--spokes "1000 10000"] [--groups "2 14"] [--rate R]
#                             [--in-flight N] [--restart-signal TERM|KILL] [--dpd S] [--pin]
#                             [--dh-key-reuse S] [--json]
#
# --dh-key-reuse S sets the spokes policy's dh-key-reuse-seconds (default 0: a fresh DH key pair
# per main mode; see docs/profiles.md for what reuse costs in forward secrecy).
# --rate R paces the swarm's new exchanges (default 10000/s, above what one hub core sustains,
# so tunnels/s is the hub's rate, or the swarm's where it shares the hub's cores; --rate 1000
# measures the hub below saturation, with shorter latencies).
#
# It is a benchmark, not a test: it asserts nothing about speed; exit 0 when every run brought
# every tunnel up and back, 1 otherwise, 2 on wrong usage or without root. The namespaces
# (ikh-<pid>-<n>-hs / -hsspk), the daemons, the swarm and the temp directory are removed on exit,
# also on failure and Ctrl-C; every wait is bounded.
set -euo pipefail

usage() {
    sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//'
    echo "Environment: IKEHUB_BIN (default target/release/ikehub)."
}

SPOKES_LIST="1000 10000"
GROUPS_LIST="2 14"
RATE=10000
IN_FLIGHT=200
PIN=0
JSON=0
SIGNAL=TERM
DPD=30
DH_REUSE=0
while [ $# -gt 0 ]; do
    case $1 in
        --spokes) SPOKES_LIST=$2; shift 2 ;;
        --groups) GROUPS_LIST=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --in-flight) IN_FLIGHT=$2; shift 2 ;;
        --restart-signal) SIGNAL=$2; shift 2 ;;
        --dpd) DPD=$2; shift 2 ;;
        --pin) PIN=1; shift ;;
        --dh-key-reuse) DH_REUSE=$2; shift 2 ;;
        --json) JSON=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
case $SIGNAL in TERM|KILL) ;; *) echo "--restart-signal TERM or KILL" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then
    echo "benches/hub_scale.sh needs root (network namespaces, TUN devices)" >&2
    exit 2
fi
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${IKEHUB_BIN:-$HERE/target/release/ikehub}
[ -x "$BIN" ] || { echo "no ikehub binary at $BIN (cargo build --release)" >&2; exit 2; }
for n in $SPOKES_LIST; do
    if [ "$n" -gt 65000 ] || [ "$n" -lt 1 ]; then
        echo "--spokes: 1 to 65000 (127.1.0.0/16)" >&2
        exit 2
    fi
done

TMP=$(mktemp -d /tmp/ikh-hubscale.XXXXXX)
NS=""
NS_SPK=""
HUB=""
SPK=""
SWARM=""
K=0
stop_pid() { # PID: SIGTERM, then SIGKILL after 5 s
    [ -n "$1" ] || return 0
    kill -0 "$1" 2>/dev/null || return 0
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
    stop_pid "$SWARM"; SWARM=""
    stop_pid "$HUB"; HUB=""
    stop_pid "$SPK"; SPK=""
    for ns in "$NS" "$NS_SPK"; do
        [ -n "$ns" ] || continue
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    NS=""; NS_SPK=""
}
trap 'cleanup; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
now() { date +%s.%N; }
HUB_CPU=""
SWARM_CPUS=""
HUB_CORES=$(nproc)
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    HUB_CPU="taskset -c 0"
    SWARM_CPUS="taskset -c 1-$(($(nproc) - 1))"
    HUB_CORES=1
fi

# The hub: `Spokes` (template, the swarm, on 127.0.0.1), `Branch` (the real spoke, on the
# veth) and `Other` (an absent peer; the reload changes its PSK). No routes from the daemon: a
# route for 127.1.0.0/16 into the TUN device would make the swarm's addresses unbindable; the
# script routes the real spoke's network itself.
# The transforms hub and spoke share: AES128-SHA1 for ESP, AES128-SHA1 with DH group GROUP
# for phase 1.
transforms() { # GROUP
    cat <<PROFILE
[ipsec-transform.AES128_SHA1]
esp-encryption = "aes-cbc-128"
esp-authentication = "hmac-sha1"

[isakmp-transform.G$1]
encryption = "aes-cbc-128"
hash = "sha1"
dh-group = $1
PROFILE
}

hub_profile() { # GROUP OTHER-PSK
    cat <<PROFILE
[system]
control-socket = "$TMP/hub.sock"
shards = 1

[interface.lo]
address = "127.0.0.1"

[interface.veth]
address = "192.0.2.1"

[tunnel-device]
name = "ikehub0"
mtu = 1400
routes = false

$(transforms "$1")

[ipsec-policy-isakmp.Spokes]
interface = "lo"
peer = "127.1.0.0/16"
preshared-key-file = "$TMP/psk"
isakmp-transform = ["G$1"]
ipsec-transform = ["AES128_SHA1"]
initiate = "never"
nat-traversal = true
dh-key-reuse-seconds = $DH_REUSE
protected-network = [ { local = "198.51.100.0/24", remote = "127.1.0.0/16" } ]

[ipsec-policy-isakmp.Branch]
interface = "veth"
peer = "192.0.2.2"
preshared-key-file = "$TMP/psk"
isakmp-transform = ["G$1"]
ipsec-transform = ["AES128_SHA1"]
initiate = "never"
protected-network = [ { local = "198.51.100.0/24", remote = "203.0.113.0/24" } ]

[ipsec-policy-isakmp.Other]
interface = "veth"
peer = "192.0.2.99"
preshared-key = "$2"
isakmp-transform = ["G$1"]
ipsec-transform = ["AES128_SHA1"]
initiate = "never"
protected-network = [ { local = "198.51.100.0/24", remote = "192.0.2.128/25" } ]
PROFILE
}

spoke_profile() { # GROUP
    cat <<PROFILE
[system]
control-socket = "$TMP/spoke.sock"
shards = 1

[interface.wan]
address = "192.0.2.2"

[tunnel-device]
name = "ikehub0"
mtu = 1400
source-address = "203.0.113.1"
routes = true

$(transforms "$1")

[ipsec-policy-isakmp.ToHub]
interface = "wan"
peer = "192.0.2.1"
preshared-key-file = "$TMP/psk"
isakmp-transform = ["G$1"]
ipsec-transform = ["AES128_SHA1"]
initiate = "permanent"
dpd = { interval-seconds = 5, timeout-seconds = 15 }
protected-network = [ { local = "203.0.113.1", remote = "198.51.100.0/24" } ]
PROFILE
}

start_hub() {
    RUST_LOG=${RUST_LOG:-warn} ip netns exec "$NS" $HUB_CPU "$BIN" run -c "$TMP/hub.toml" \
        >> "$TMP/hub.log" 2>&1 &
    HUB=$!
    for _ in $(seq 300); do
        "$BIN" show peers --control "$TMP/hub.sock" > /dev/null 2>&1 && break
        kill -0 "$HUB" 2>/dev/null || { cat "$TMP/hub.log" >&2; exit 1; }
        sleep 0.1
    done
    ip -n "$NS" route replace 203.0.113.0/24 dev ikehub0 src 198.51.100.1
}

# The swarm's last progress line (stderr, once a second).
progress() { grep '^\[' "$TMP/swarm.err" 2>/dev/null | tail -1 || true; }
ike_drops() { # the hub's IKE datagrams dropped by the kernel at its IKE sockets (show counters)
    "$BIN" show counters --control "$TMP/hub.sock" --json 2>/dev/null \
        | python3 -c 'import json,sys
def find(v):
    if isinstance(v, dict):
        if "ike_socket_drops" in v: return v["ike_socket_drops"]
        v = list(v.values())
    if isinstance(v, list):
        for x in v:
            r = find(x)
            if r is not None: return r
print(find(json.load(sys.stdin)))' 2>/dev/null || echo None
}

field() { # NAME: the number after NAME in the last progress line
    progress | { grep -o "$1 [0-9]*" || true; } | head -1 | awk '{ print $2 }'
}

# Pings through the real spoke's tunnel until one is answered (bounded).
wait_branch() {
    for _ in $(seq 90); do
        ip netns exec "$NS_SPK" ping -n -c 1 -W 1 -I 203.0.113.1 198.51.100.1 > /dev/null 2>&1 \
            && return 0
        sleep 1
    done
    return 1
}

head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/psk"
FAILED=0
RESULTS=()
for n in $SPOKES_LIST; do
for g in $GROUPS_LIST; do
    K=$((K + 1))
    NS="ikh-$$-$K-hs"
    NS_SPK="ikh-$$-$K-hsspk"
    ip netns add "$NS"
    ip netns add "$NS_SPK"
    ip -n "$NS" link set lo up
    ip -n "$NS_SPK" link set lo up
    ip -n "$NS" addr add 198.51.100.1/32 dev lo
    ip -n "$NS_SPK" addr add 203.0.113.1/32 dev lo
    ip link add hs0 netns "$NS" type veth peer name wan0 netns "$NS_SPK"
    ip -n "$NS" addr add 192.0.2.1/24 dev hs0
    ip -n "$NS_SPK" addr add 192.0.2.2/24 dev wan0
    ip -n "$NS" link set hs0 up
    ip -n "$NS_SPK" link set wan0 up
    hub_profile "$g" "other before" > "$TMP/hub.toml"
    spoke_profile "$g" > "$TMP/spoke.toml"
    : > "$TMP/hub.log"
    : > "$TMP/swarm.err"
    start_hub
    RUST_LOG=${RUST_LOG:-warn} ip netns exec "$NS_SPK" $SWARM_CPUS "$BIN" run -c "$TMP/spoke.toml" \
        > "$TMP/spoke.log" 2>&1 &
    SPK=$!
    wait_branch || { echo "the real spoke's tunnel did not come up" >&2; cat "$TMP/spoke.log" >&2; exit 1; }

    echo "N $n, group $g: setup ($RATE/s, $IN_FLIGHT in flight)" >&2
    cpu0=$(cpu_ticks "$HUB")
    rss0=$(rss_kib "$HUB")
    t0=$(now)
    ip netns exec "$NS" $SWARM_CPUS "$BIN" loadgen --hub 127.0.0.1 --spokes "$n" \
        --sources 127.1.0.0/16 --psk-file "$TMP/psk" --ike-group "$g" --rate "$RATE" \
        --max-in-flight "$IN_FLIGHT" --hold 86400 --timeout 86400 --reconnect \
        --dpd-interval "$DPD" --json > "$TMP/report.json" 2> "$TMP/swarm.err" &
    SWARM=$!
    limit=$(( n / RATE + 300 ))
    ok=0
    for _ in $(seq $((limit * 2))); do
        [ "$(field up)" = "$n" ] && { ok=1; break; }
        kill -0 "$SWARM" 2>/dev/null || break
        sleep 0.5
    done
    cpu1=$(cpu_ticks "$HUB")
    swarm_cpu=$(cpu_ticks "$SWARM" 2>/dev/null || echo 0)
    rss1=$(rss_kib "$HUB")
    drops_setup=$(ike_drops)
    [ "$ok" = 1 ] || { echo "not all up within $limit s: $(progress)" >&2; FAILED=1; cleanup; continue; }

    echo "N $n, group $g: restart (SIG$SIGNAL)" >&2
    kill "-$SIGNAL" "$HUB"
    for _ in $(seq 300); do kill -0 "$HUB" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$HUB" 2>/dev/null || true
    wait "$HUB" 2>/dev/null || true
    t_start=$(now)
    start_hub
    back=""
    for _ in $(seq $(( (n / 10 + 600) * 2 ))); do
        lost=$(field lost); down=$(field down)
        if [ -n "$lost" ] && [ "$lost" -ge "$n" ] && [ "$down" = 0 ]; then
            back=$(python3 -c "print(round($(now) - $t_start, 1))")
            break
        fi
        kill -0 "$SWARM" 2>/dev/null || break
        sleep 0.5
    done
    cpu_r=$(cpu_ticks "$HUB")
    drops_recovery=$(ike_drops)
    [ -n "$back" ] || { echo "not all back: $(progress)" >&2; FAILED=1; }

    echo "N $n, group $g: reload" >&2
    reload_ms=""
    ping_lost=""
    lost_before=$(field lost)
    if wait_branch; then
        ip netns exec "$NS_SPK" ping -n -q -i 0.01 -c 500 -W 1 -I 203.0.113.1 198.51.100.1 \
            > "$TMP/ping.out" 2>&1 &
        PING=$!
        sleep 1
        hub_profile "$g" "other after" > "$TMP/hub.toml"
        reply=$("$BIN" reload --control "$TMP/hub.sock" 2>&1 || true)
        echo "$reply" | sed 's/^/  reload: /' >&2
        reload_ms=$(echo "$reply" | sed -n 's/^reload took \([0-9.]*\) ms$/\1/p')
        wait "$PING" || true
        ping_lost=$(awk '/packets transmitted/ { print $1 - $4 }' "$TMP/ping.out")
    else
        echo "the real spoke's tunnel did not come back after the restart" >&2
        FAILED=1
    fi
    sleep 2
    lost_after=$(field lost)

    kill -INT "$SWARM"
    for _ in $(seq 300); do kill -0 "$SWARM" 2>/dev/null || break; sleep 0.1; done
    wait "$SWARM" 2>/dev/null || FAILED=1
    SWARM=""
    RESULTS+=("$(python3 - "$TMP/report.json" "$g" "$cpu0" "$cpu1" "$cpu_r" "$CLK_TCK" \
        "$rss0" "$rss1" "$back" "$HUB_CORES" "$reload_ms" "$ping_lost" "$lost_before" \
        "$lost_after" "$SIGNAL" "$drops_setup" "$drops_recovery" "$swarm_cpu" "$t_start" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
(g, c0, c1, cr, tck, rss0, rss1, back, cores, reload_ms, ping_lost, lb, la, sig, ds, dr,
 sc, t_start) = sys.argv[2:]
# The swarm's own clock of the last tunnel back (microseconds), against the hub's start on the
# same wall clock: finer than the progress lines the wait above polls (1 s steps).
if r.get("all_back_seconds") is not None and r.get("started_unix"):
    exact = r["started_unix"] + r["all_back_seconds"] - float(t_start)
    if exact >= 0:
        back = "%.2f" % exact
n = r["spokes"]
up = r["up"]
cpu_ms = (int(c1) - int(c0)) * 1000.0 / int(tck)
per = cpu_ms / up if up else None
rec_cpu = int(cr) * 1000.0 / int(tck)
lat = r["latency_ms"] or {"p50": 0, "p99": 0}
num = lambda s: float(s) if s not in ("", None) else None
print(json.dumps({
    "spokes": n, "group": int(g), "up": up, "setup_rate": round(r["setup_rate"], 1),
    "p50_ms": lat["p50"], "p99_ms": lat["p99"], "setup_retransmissions":
        r["retransmissions"] - r["recovery_retransmissions"],
    "hub_cpu_ms_per_tunnel": round(per, 3) if per else None,
    "swarm_cpu_ms_per_tunnel": round(int(sc) * 1000.0 / int(tck) / up, 3) if up else None,
    "hub_rss_kib_before": int(rss0), "hub_rss_kib_all_up": int(rss1),
    "hub_kib_per_tunnel": round((int(rss1) - int(rss0)) / up, 2) if up else None,
    "restart_signal": sig, "all_back_after_start_s": num(back),
    "swarm_recovery_s": r["recovery_seconds"] and round(r["recovery_seconds"], 2),
    "recovery_bound_s": round(n * per / 1000.0 / int(cores) * 1.2, 2) if per else None,
    "recovery_retransmissions": r["recovery_retransmissions"],
    "reconnect_attempts": r["reconnect_attempts"], "down_at_end": r["down_at_end"],
    "hub_cpu_ms_per_tunnel_recovery": round(rec_cpu / n, 3),
    # On a busy machine the hub gets less than its core: wall time then exceeds CPU time.
    "hub_core_share_recovery": round(rec_cpu / 1000.0 / float(back), 2) if num(back) else None,
    "setup_seconds": round(r["setup_seconds"], 2),
    "reload_ms": num(reload_ms), "reload_pings_lost_of_500": num(ping_lost),
    "tunnels_lost_by_reload": (int(la) - int(lb)) if la and lb else None,
    "ike_socket_drops_setup": num(ds) if ds != "None" else None,
    "ike_socket_drops_recovery": num(dr) if dr != "None" else None,
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
    printf '%-6s %-3s %-12s %-9s %-8s %-9s %-9s %-22s %-8s %-6s | %-9s %-9s %-8s %-8s %-8s %-6s | %-9s %s\n' \
        N grp up tunnels/s "p99 ms" "ms/tunl" "swarm ms" "RSS KiB before->up" "KiB/tun" drops \
        "back s" "recov s" "bound s" retrans "ms/tunl" drops "reload ms" "pings lost"
    for r in "${RESULTS[@]}"; do
        python3 -c '
import json, sys
r = json.loads(sys.argv[1])
f = lambda v: "-" if v is None else str(v)
print("%-6s %-3s %-12s %-9s %-8s %-9s %-9s %-22s %-8s %-6s | %-9s %-9s %-8s %-8s %-8s %-6s | %-9s %s" % (
    r["spokes"], r["group"], "%d/%d" % (r["up"], r["spokes"]), r["setup_rate"], r["p99_ms"],
    f(r["hub_cpu_ms_per_tunnel"]), f(r["swarm_cpu_ms_per_tunnel"]), "%d -> %d" % (r["hub_rss_kib_before"], r["hub_rss_kib_all_up"]),
    f(r["hub_kib_per_tunnel"]), f(r["ike_socket_drops_setup"]), f(r["all_back_after_start_s"]),
    f(r["swarm_recovery_s"]), f(r["recovery_bound_s"]), r["recovery_retransmissions"],
    r["hub_cpu_ms_per_tunnel_recovery"], f(r["ike_socket_drops_recovery"]),
    f(r["reload_ms"]), "%s/500 (swarm tunnels lost: %s)" % (f(r["reload_pings_lost_of_500"]),
    f(r["tunnels_lost_by_reload"]))))' "$r"
    done
    echo "restart: SIG$SIGNAL; 'back s' from the new hub's start to all N back,"\
         "'recov s' the swarm's first loss to last back, bound = N x ms/tunnel / $HUB_CORES hub core(s) + 20%" >&2
fi
exit $FAILED
