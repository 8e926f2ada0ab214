#!/usr/bin/env bash
# Macro measurements of the ledger, as cited in docs/PERFORMANCE.md.
#
# Usage: benches/run.sh [machine] [sled] [throughput] [latency] [memory] [verify]
# (no argument: all of them, in that order; about two minutes).
#
# Builds `writ` in release, then runs `writ ledger bench` (and export/verify) on
# fresh data dirs under a temporary directory, printing one line per figure.
# `sled` runs the criterion benchmark `raw_sled/batch64_flush` so that the ratio
# of ledger to raw-sled throughput comes from the same run. The criterion
# micro-benchmarks (append cost, proofs) are `cargo bench -p writ-ledger`.
# Needs jq and /usr/bin/time (GNU time).
set -euo pipefail

cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
writ="$target_dir/release/writ"
work=$(mktemp -d "${TMPDIR:-/tmp}/writ-perf.XXXXXX")
trap 'rm -rf "$work"' EXIT

sections=("$@")
if [[ ${#sections[@]} -eq 0 ]]; then
    sections=(machine sled throughput latency memory verify)
fi

cargo build --release --quiet -p writ

# One `writ ledger bench --json` run on a fresh data dir named $1; prints the JSON.
bench() {
    local dir="$work/$1"
    shift
    rm -rf "$dir"
    "$writ" ledger bench --data "$dir" --entry-bytes 200 --json "$@"
}

# "<entries/s> entries/s, p50 <us> us, p99 <us> us" from a bench JSON line.
summary() {
    jq -r '"\(.entries_per_sec | floor) entries/s, p50 \(.p50_us) us, p99 \(.p99_us) us"'
}

# awk arithmetic: calc FORMAT EXPRESSION [VAR=VALUE...]
calc() {
    local format=$1 expression=$2
    shift 2
    local vars=()
    for assignment in "$@"; do vars+=(-v "$assignment"); done
    awk "${vars[@]}" "BEGIN { printf \"$format\", $expression }"
}

raw_sled_per_sec=""

machine() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(free -m | awk '/^Mem:/ {print $2}') MiB"
    fsync_probe
}

# 2000 synchronous 16 KiB writes (O_DSYNC: each write waits for the device). On a
# VM this varies over time, so it is also printed before the throughput runs.
fsync_probe() {
    local seconds
    seconds=$(dd if=/dev/zero of="$work/dsync" bs=16k count=2000 oflag=dsync 2>&1 |
        awk '/copied/ {print $(NF-3)}')
    rm -f "$work/dsync"
    echo "fsync (dd bs=16k count=2000 oflag=dsync): $(calc "%.2f" "s / 2" "s=$seconds") ms per write"
}

sled() {
    if ! cargo bench --quiet -p writ-ledger --bench ledger -- 'raw_sled/batch64_flush$' \
        >"$work/criterion.log" 2>&1; then
        cat "$work/criterion.log" >&2
        return 1
    fi
    local mean_ns
    mean_ns=$(jq '.mean.point_estimate' \
        "$target_dir/criterion/raw_sled/batch64_flush/new/estimates.json")
    raw_sled_per_sec=$(calc "%.0f" "64 / (ns / 1e9)" "ns=$mean_ns")
    echo "raw sled apply_batch(64 x 200 B) + flush (criterion mean):" \
        "$(calc "%.0f" "ns / 1000" "ns=$mean_ns") us per batch = $raw_sled_per_sec entries/s"
}

throughput() {
    fsync_probe
    local line
    line=$(bench tput --entries 200000 --writers 64)
    echo "throughput, 64 writers (linger 200 us, max batch 4096): $(summary <<<"$line")"
    if [[ -n $raw_sled_per_sec ]]; then
        echo "ledger / raw sled: $(calc "%.2f" "l / r" \
            "l=$(jq .entries_per_sec <<<"$line")" "r=$raw_sled_per_sec")"
    fi
    local options
    for options in "--linger-us 0" "--linger-us 1000" "--max-batch 64" "--max-batch 32"; do
        # shellcheck disable=SC2086 # the options are words
        echo "throughput, 64 writers, $options: $(bench tput --entries 200000 --writers 64 $options | summary)"
    done
    echo "throughput, 1024 writers (more in flight than the target's 64):" \
        "$(bench tput --entries 200000 --writers 1024 | summary)"
}

latency() {
    echo "latency, open loop, 10000 entries/s offered:" \
        "$(bench lat --entries 100000 --writers 64 --rate 10000 | summary)"
    echo "latency, closed loop, 8 writers: $(bench lat --entries 50000 --writers 8 | summary)"
}

# Max RSS of the whole bench process (writers, committer and store) at two sizes.
memory() {
    local entries
    for entries in 100000 1000000; do
        rm -rf "$work/mem-$entries"
        /usr/bin/time -v -o "$work/time-$entries" \
            "$writ" ledger bench --data "$work/mem-$entries" --entries "$entries" \
            --writers 64 --entry-bytes 200 --json >"$work/bench-$entries"
        local rss_kib
        rss_kib=$(awk '/Maximum resident set size/ {print $NF}' "$work/time-$entries")
        echo "memory, $entries entries: max RSS $(calc "%.0f" "k / 1024" "k=$rss_kib") MiB," \
            "$(summary <"$work/bench-$entries")"
    done
}

verify() {
    local data="$work/mem-1000000"
    if [[ ! -d $data ]]; then
        "$writ" ledger bench --data "$data" --entries 1000000 --writers 64 --entry-bytes 200 \
            --json >/dev/null
    fi
    rm -rf "$work/export"
    "$writ" ledger export --data "$data" --out "$work/export" >/dev/null
    "$writ" keys show --data "$data" >"$work/verifier.key"
    local line
    line=$("$writ" ledger verify "$work/export" --key "$work/verifier.key" --json)
    echo "verify, export of $(jq .size <<<"$line") entries, $(jq .checkpoints <<<"$line")" \
        "checkpoints: $(jq -r '"\(.entries_per_sec | floor) entries/s in \(.seconds) s, ok \(.ok)"' <<<"$line")"
}

for section in "${sections[@]}"; do
    case $section in
        machine | sled | throughput | latency | memory | verify) "$section" ;;
        *)
            echo "unknown section \`$section\`" >&2
            exit 2
            ;;
    esac
done
