#!/usr/bin/env bash
# Load test of the vault over HTTP, as cited in docs/PERFORMANCE.md ("Vault").
#
# Usage: benches/vault_load.sh
#
# Starts `writ serve` on a fresh data dir on loopback, removes the approval
# obligation from the reveal policy (the approval workflow is another issue; with
# the obligation every reveal is held), stores one secret, then:
#   1. reveal: wrk at a fixed offered rate (RATE/s over CONNECTIONS connections,
#      each pausing CONNECTIONS*1000/RATE ms between requests); every reveal is a
#      Cedar decision, a durable ledger entry, an unwrap and a decrypt;
#   2. put: wrk unpaced with PUT_CONNECTIONS connections (each put is a decision
#      recorded in the ledger, then a sealed new version flushed to sled).
# The rewrap rate is the criterion benchmark `cargo bench -p writ-vault`.
#
# Environment: RATE [1000], CONNECTIONS [8], DURATION [20s], PUT_CONNECTIONS [16].
# Needs curl, jq; wrk comes from apt.
set -euo pipefail

cd "$(dirname "$0")/.."
rate=${RATE:-1000}
connections=${CONNECTIONS:-8}
duration=${DURATION:-20s}
put_connections=${PUT_CONNECTIONS:-16}
script=benches/vault.lua
writ="${CARGO_TARGET_DIR:-target}/release/writ"

if ! command -v wrk >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet -p writ

work=$(mktemp -d "${TMPDIR:-/tmp}/writ-vault-load.XXXXXX")
server_pid=""
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        wait "$server_pid" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ), nproc $(nproc), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
data="$work/data"
"$writ" init --data "$data" --admin-key-out "$work/admin.key" 2>/dev/null
python3 - "$data/policies/sensitive.cedar" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
gated = '@obligation("approval")\n@id("secret-reveal")'
assert gated in text
open(path, "w").write(text.replace(gated, '@id("secret-reveal")'))
PY
"$writ" serve --data "$data" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 300); do
    grep -q '^listening on ' "$work/serve.out" 2>/dev/null && break
    sleep 0.1
done
export WRIT_URL="http://$(sed -n 's/^listening on //p' "$work/serve.out")"
admin=$(cat "$work/admin.key")
WRIT_TOKEN=$admin "$writ" entity put tests/fixtures/sidecar/entities.json >/dev/null
bob=$(WRIT_TOKEN=$admin "$writ" apikey create --principal 'User::"bob"' --workspace acme 2>/dev/null)
runner=$(WRIT_TOKEN=$admin "$writ" apikey create --principal 'Agent::"runner"' --workspace acme 2>/dev/null)
printf 'postgres://app:a-64-byte-password-for-the-benchmark-only@db:5432/app' |
    WRIT_TOKEN=$bob "$writ" secret put bench/db >/dev/null
WRIT_TOKEN=$runner "$writ" secret reveal bench/db >/dev/null 2>&1 || {
    echo "the first reveal failed" >&2
    exit 1
}

summary() {
    awk '
        /requests in/ { requests = $1 }
        /^Requests\/sec:/ { rate = $2 }
        /^lua p50 us:/ { p50 = $4 }
        /^lua p99 us:/ { p99 = $4 }
        /^lua max us:/ { max = $4 }
        /^lua not 2xx:/ { bad = $4 }
        END { printf "%.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, %d answers, %d not 2xx", rate, p50/1000, p99/1000, max/1000, requests, bad }
    ' "$1"
}

# Each connection pauses `delay` ms after every answer; an answer takes about a
# millisecond, which the pause leaves out. The achieved rate is printed.
delay=$((connections * 1000 / rate - 1))
if [[ $delay -lt 0 ]]; then delay=0; fi
MODE=reveal DELAY_MS=$delay WRIT_TOKEN=$runner \
    wrk -t"$connections" -c"$connections" -d"$duration" -s "$script" "$WRIT_URL" >"$work/reveal.wrk"
echo "reveal, paced for $rate/s ($connections connections, each pausing ${delay} ms), $duration: $(summary "$work/reveal.wrk")"

MODE=put WRIT_TOKEN=$bob \
    wrk -t2 -c"$put_connections" -d"$duration" -s "$script" "$WRIT_URL" >"$work/put.wrk"
echo "put, $put_connections connections, $duration: $(summary "$work/put.wrk")"
