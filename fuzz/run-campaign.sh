#!/bin/sh
# Runs every fuzz target in turn, one at a time (a run uses one core), each for RUNS inputs (default one million),
# starting from the committed seeds; prints libFuzzer's last lines per target. Logs go to the logs folder beside this script (not committed).
# Usage: fuzz/run-campaign.sh [target...]   (all targets when none is named)
set -eu
cd "$(dirname "$0")"
RUNS=${RUNS:-1000000}
TARGETS=${*:-"nova_query glance_list_query glance_patch nova_request cloud_config scenario_toml domain_xml qcow2_reader image_inspect fat_floppy iso9660"}
mkdir -p logs
for target in $TARGETS; do
    case $target in
        image_inspect | fat_floppy | qcow2_reader) max_len=65536 ;;
        iso9660) max_len=80000 ;;
        *) max_len=8192 ;;
    esac
    mkdir -p "corpus/$target"
    start=$(date +%s)
    status=0
    cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -runs="$RUNS" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"logs/$target.log" 2>&1 || status=$?
    echo "== $target: exit $status, $(($(date +%s) - start)) s"
    grep -E "^#[0-9]+.*(DONE|pulse|INITED)|stat::number_of_executed_units|stat::average_exec_per_sec|SUMMARY|panicked|ERROR" \
        "logs/$target.log" | tail -5
done
