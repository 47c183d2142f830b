#!/usr/bin/env bash
# IKE setup rate by IKE worker count (issue 10, "setup rate with both cores >= 1.8x the one-core
# rate"): runs `ikehub demo --spokes N --seconds 2 --ike-workers W` R times for each W (the runs
# alternate between the worker counts, so a machine that gets busier mid-way hurts both), and
# prints per run the setup rate and the hub's IKE worker CPU, then per W the min / median / max
# tunnels/s and the ratio of the medians to the first W.
#
#   benches/ike_workers.sh [--spokes N] [--repeat R] [--workers "1 2"]   (IKEHUB_BIN as for
#                                                                        the other benches)
#
# The demo's spokes live in the same process and do as many exponentiations as the hub (one
# group-14 key pair and one shared secret per tunnel each side), so the demo shows the hub's
# scaling only when the machine has cores for both: about 2 x W. On 2 cores the whole process
# is CPU-bound at any W; the "hub CPU per tunnel" column is then the figure to compare.
# Unprivileged, loopback only; it asserts nothing (a benchmark) and starts nothing that outlives
# it (each demo run is bounded by its own deadline).
set -euo pipefail

SPOKES=1000
REPEAT=3
WORKERS="1 2"
while [ $# -gt 0 ]; do
    case "$1" in
    --spokes) SPOKES=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    *)
        echo "usage: benches/ike_workers.sh [--spokes N] [--repeat R] [--workers \"1 2\"]" >&2
        exit 2
        ;;
    esac
done
[[ $SPOKES =~ ^[1-9][0-9]{0,5}$ && $REPEAT =~ ^[1-9][0-9]?$ ]] || {
    echo "ike_workers.sh: --spokes and --repeat take positive numbers" >&2
    exit 2
}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${IKEHUB_BIN:-$REPO/target/release/ikehub}
[ -x "$BIN" ] || { echo "ike_workers.sh: no ikehub binary at $BIN" >&2; exit 2; }
OUT=$(mktemp /tmp/ikehub-ike-workers.XXXXXX)
trap 'rm -f "$OUT"' EXIT

echo "ikehub demo --spokes $SPOKES, ike-workers $WORKERS, $REPEAT run(s) each; $(nproc) CPU(s)"
printf '%-4s %-8s %12s %14s %16s %s\n' run workers tunnels/s "hub CPU s" "hub CPU/tunnel" "load (1 min)"
declare -A RATES
for r in $(seq 1 "$REPEAT"); do
    for w in $WORKERS; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        note=
        if ! "$BIN" demo --spokes "$SPOKES" --seconds 2 --ike-workers "$w" >"$OUT" 2>/dev/null; then
            # The setup figure stands when every tunnel came up; the traffic check is the
            # demo's own business (on a loaded machine a spoke may see no echo in 2 s).
            if ! grep -q "^tunnels up by IKE (spoke side) *$SPOKES/$SPOKES\$" "$OUT"; then
                echo "run $r with $w worker(s): not every tunnel came up:" >&2
                cat "$OUT" >&2
                exit 1
            fi
            note="(demo: traffic check failed: $(grep -c '^  spoke-' "$OUT") spoke(s))"
        fi
        rate=$(sed -n 's/^setup time (IKE, all tunnels) *[0-9.]* s (\([0-9]*\) tunnels\/s.*/\1/p' "$OUT")
        cpu=$(sed -n 's/^hub IKE workers: peer actors \/ CPU s *//p' "$OUT" |
            tr ',' '\n' | awk -F' / ' '{ s += $2 } END { printf "%.2f", s }')
        per=$(sed -n 's/^hub IKE worker CPU per tunnel *//p' "$OUT")
        printf '%-4s %-8s %12s %14s %16s %s %s\n' "$r" "$w" "$rate" "$cpu" "$per" "$load" "$note"
        RATES[$w]="${RATES[$w]:-} $rate"
    done
done

echo
printf '%-8s %10s %10s %10s %10s\n' workers min median max "x first"
base=
for w in $WORKERS; do
    read -r min med max < <(tr ' ' '\n' <<<"${RATES[$w]}" | grep . | sort -n |
        awk '{ v[NR] = $1 } END { printf "%s %s %s\n", v[1], v[int((NR + 1) / 2)], v[NR] }')
    [ -n "$base" ] || base=$med
    printf '%-8s %10s %10s %10s %10s\n' "$w" "$min" "$med" "$max" \
        "$(awk -v a="$med" -v b="$base" 'BEGIN { printf "%.2f", a / b }')"
done
