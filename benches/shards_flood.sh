#!/usr/bin/env bash
# Hand-over queue under a UDP flood through a 2-shard daemon (issue 12 follow-up): runs
# `benches/tunnel.sh --quick` (iperf3 TCP then UDP at 2 Gbit/s through an ikehub <-> ikehub
# ESP-in-UDP tunnel) with `shards = 2` written into each daemon's profile, and prints each
# daemon's peak RSS and its `handed_over` / `handoff_dropped` totals (`show counters`).
# Before the hand-over bound the sending daemon's RSS grew with the queued batches; with it the
# excess is dropped and counted.
#
#   sudo benches/shards_flood.sh [--seconds N]     (IKEHUB_BIN as for tunnel.sh)
#
# It asserts nothing (a benchmark). Everything it starts is tunnel.sh's (which cleans up) and
# one sampler loop bounded in time; its temp directory is removed on exit.
set -euo pipefail

if [ -n "${SHARDS_FLOOD_WRAP:-}" ]; then
    # Called by tunnel.sh as IKEHUB_BIN: add the shards key, note the daemon, become ikehub.
    if [ "${1:-}" = run ] && [ "${2:-}" = -c ] && [ -n "${3:-}" ]; then
        sed -i 's/^\[system\]$/[system]\nshards = 2/' "$3"
        echo "$$ $3" >>"$SHARDS_FLOOD_DIR/daemons"
    fi
    exec "$SHARDS_FLOOD_REAL" "$@"
fi

SECONDS_PER_RUN=10
if [ "${1:-}" = --seconds ] && [[ ${2:-} =~ ^[1-9][0-9]{0,2}$ ]]; then
    SECONDS_PER_RUN=$2
elif [ $# -gt 0 ]; then
    echo "usage: benches/shards_flood.sh [--seconds N]" >&2
    exit 2
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
export SHARDS_FLOOD_REAL=${IKEHUB_BIN:-$REPO/target/release/ikehub}
[ -x "$SHARDS_FLOOD_REAL" ] || { echo "shards_flood.sh: no ikehub binary at $SHARDS_FLOOD_REAL" >&2; exit 2; }
SHARDS_FLOOD_DIR=$(mktemp -d /tmp/ikehub-shards-flood.XXXXXX)
export SHARDS_FLOOD_DIR
SAMPLER=
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
    rm -rf "$SHARDS_FLOOD_DIR"
}
trap cleanup EXIT

# Peak RSS and the last counters of every daemon tunnel.sh starts, every 0.5 s, bounded.
sample() {
    local end=$((SECONDS + 8 * SECONDS_PER_RUN + 120)) pid cfg rss
    declare -A peak
    while [ $SECONDS -lt $end ] && [ ! -f "$SHARDS_FLOOD_DIR/stop" ]; do
        if [ -f "$SHARDS_FLOOD_DIR/daemons" ]; then
            while read -r pid cfg; do
                rss=$(ps -o rss= -p "$pid" 2>/dev/null | tr -d ' ') || true
                [ -n "$rss" ] || continue
                [ "${peak[$pid]:-0}" -lt "$rss" ] && peak[$pid]=$rss
                echo "$pid ${peak[$pid]}" >"$SHARDS_FLOOD_DIR/rss-$pid"
                timeout -k 1 2 "$SHARDS_FLOOD_REAL" show counters -c "$cfg" --json \
                    >"$SHARDS_FLOOD_DIR/counters-$pid.new" 2>/dev/null &&
                    mv "$SHARDS_FLOOD_DIR/counters-$pid.new" "$SHARDS_FLOOD_DIR/counters-$pid" || true
            done <"$SHARDS_FLOOD_DIR/daemons"
        fi
        sleep 0.5
    done
}
sample &
SAMPLER=$!

SHARDS_FLOOD_WRAP=1 IKEHUB_BIN="$REPO/benches/shards_flood.sh" "$REPO/benches/tunnel.sh" --quick --seconds "$SECONDS_PER_RUN" || true
touch "$SHARDS_FLOOD_DIR/stop"
wait "$SAMPLER" || true
SAMPLER=

echo
echo "daemon  profile                    peak RSS KiB   handed_over   handoff_dropped"
while read -r pid cfg; do
    read -r _ rss <"$SHARDS_FLOOD_DIR/rss-$pid" 2>/dev/null || rss=-
    counts=$(python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
c = [s["counters"] for s in v if "shard" in s]
print(sum(x.get("handed_over", 0) for x in c), sum(x.get("handoff_dropped", 0) for x in c))
' "$SHARDS_FLOOD_DIR/counters-$pid" 2>/dev/null) || counts="- -"
    printf '%-7s %-26s %12s %13s %17s\n' "$pid" "$(basename "$(dirname "$cfg")")" "$rss" $counts
done <"$SHARDS_FLOOD_DIR/daemons"
