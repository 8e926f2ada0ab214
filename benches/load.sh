#!/usr/bin/env bash
# Load test of the sidecar, as cited in docs/PERFORMANCE.md ("Sidecar").
#
# Usage: benches/load.sh
#
# Starts `writ serve` on a fresh data dir (under a temporary directory) on
# loopback, gives it a workspace, an agent and a work item, and drives
# `POST /v1/authorize` with wrk (installed with apt-get when missing): every
# answer waits until its decision is durably recorded in the ledger. Then it keeps
# the load on until DECISIONS decisions are recorded and reports the server's
# resident memory and the data dir's size. Prints one line per figure.
#
# Environment (defaults in brackets):
#   DURATION [30s]        the measured run
#   CONNECTIONS [16]      its open connections (each one request at a time)
#   THREADS [2]           wrk threads
#   DECISIONS [1000000]   decisions recorded before memory is read
#   SWEEP ["1 4 16 64"]   connection counts of short extra runs ("" for none)
#   SWEEP_DURATION [10s]  each of those
#   LEDGER_BENCH [1]      also run `writ ledger bench` with CONNECTIONS writers
#                         and entries the size of a decision (0 to skip)
#   GRANTS [none]         the grant live during the load (docs/PERFORMANCE.md,
#                         "Grants"): none; other: a consent to the load's principal
#                         to read WorkItem "w2", which does not cover its requests
#                         (each decision takes the grants path, no grant applies);
#                         consent: a consent to read WorkItem "w1", which covers
#                         every request (its `Consent` entity is added to each);
#                         elevation: an approved break-glass elevation of the
#                         load's principal to `admin` (a User: PRINCIPAL=user)
#   WRIT_BIN [unset]      a writ binary to measure instead of building this tree
#   PRINCIPAL [agent;     who makes the load's requests: agent (Agent "runner",
#     user if elevation]  role agent) or user (User "carol", role viewer); both may
#                         read WorkItem "w1" on their standing role
#
# Every mode stores the same entities (among them User "olivia", an owner, who
# grants the consent or approves the elevation through the API before the
# measured run). The first answer must name the grant (consent, elevation) or name
# none (none, other), or the run fails.
#
# Needs curl, jq, awk and /usr/bin/time (GNU time); wrk comes from apt.
set -euo pipefail

cd "$(dirname "$0")/.."
duration=${DURATION:-30s}
connections=${CONNECTIONS:-16}
threads=${THREADS:-2}
decisions=${DECISIONS:-1000000}
sweep=${SWEEP-1 4 16 64}
sweep_duration=${SWEEP_DURATION:-10s}
ledger_bench=${LEDGER_BENCH:-1}
grants=${GRANTS:-none}
case $grants in
    elevation) principal=${PRINCIPAL:-user} ;;
    none | other | consent) principal=${PRINCIPAL:-agent} ;;
    *)
        echo "GRANTS must be none, other, consent or elevation" >&2
        exit 2
        ;;
esac
case $principal in
    agent) principal_uid='Agent::"runner"' ;;
    user) principal_uid='User::"carol"' ;;
    *)
        echo "PRINCIPAL must be agent or user" >&2
        exit 2
        ;;
esac
if [[ $grants == elevation && $principal != user ]]; then
    echo "an elevation is for a User: GRANTS=elevation needs PRINCIPAL=user" >&2
    exit 2
fi
script=benches/authorize.lua
target_dir=${CARGO_TARGET_DIR:-target}
# WRIT_BIN: a writ binary to measure instead of this tree's release build (for a
# before-and-after run of two commits on one machine).
writ=${WRIT_BIN:-$target_dir/release/writ}

if ! command -v wrk >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "wrk is missing; install it (apt-get install wrk) or run as root" >&2
        exit 1
    fi
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

if [[ -z ${WRIT_BIN:-} ]]; then
    cargo build --release --quiet -p writ
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/writ-load.XXXXXX")
server_pid=""
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        wait "$server_pid" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# awk arithmetic: calc FORMAT EXPRESSION [VAR=VALUE...]
calc() {
    local format=$1 expression=$2
    shift 2
    local vars=()
    for assignment in "$@"; do vars+=(-v "$assignment"); done
    awk "${vars[@]}" "BEGIN { printf \"$format\", $expression }"
}

load_average() {
    cut -d' ' -f1-3 /proc/loadavg
}

# CPU seconds (user + system) the server has used so far.
server_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$server_pid/stat"
}

# Busy and total jiffies of the whole machine (all processes, both cores).
machine_jiffies() {
    awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8; total = busy + $5 + $6; print busy, total }' /proc/stat
}

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ), nproc $(nproc), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ local changes)')"
echo "wrk: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"

data="$work/data"
"$writ" init --data "$data" --admin-key-out "$work/admin.key" 2>"$work/init.log"

"$writ" serve --data "$data" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 300); do
    grep -q '^listening on ' "$work/serve.out" 2>/dev/null && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        cat "$work/serve.log" >&2
        exit 1
    fi
    sleep 0.1
done
address=$(sed -n 's/^listening on //p' "$work/serve.out")
if [[ -z $address ]]; then
    echo "the server did not say where it listens" >&2
    exit 1
fi
url="http://$address"

cat >"$work/entities.json" <<'EOF'
[
  {"uid": {"type": "Workspace", "id": "acme"},
   "attrs": {"egress_allow": ["api.openai.com", "*.github.com"]}, "parents": []},
  {"uid": {"type": "Agent", "id": "runner"},
   "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}, "stopped": false},
   "parents": [{"type": "Role", "id": "agent"}]},
  {"uid": {"type": "User", "id": "olivia"},
   "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}},
   "parents": [{"type": "Role", "id": "owner"}]},
  {"uid": {"type": "User", "id": "carol"},
   "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}},
   "parents": [{"type": "Role", "id": "viewer"}]},
  {"uid": {"type": "WorkItem", "id": "w1"},
   "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}}, "parents": []},
  {"uid": {"type": "WorkItem", "id": "w2"},
   "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}}, "parents": []}
]
EOF
WRIT_URL=$url WRIT_TOKEN=$(cat "$work/admin.key") \
    "$writ" entity put "$work/entities.json" >/dev/null
api_key() {
    WRIT_URL=$url WRIT_TOKEN=$(cat "$work/admin.key") \
        "$writ" apikey create --principal "$1" --workspace acme 2>/dev/null
}
WRIT_TOKEN=$(api_key "$principal_uid")
export WRIT_TOKEN

# POST to a grant endpoint: grant_call TOKEN PATH BODY; prints the answer, fails
# unless it is a 2xx.
grant_call() {
    local answer
    if ! answer=$(curl -sS --fail-with-body -X POST "$url$2" \
        -H "Authorization: Bearer $1" -H 'Content-Type: application/json' -d "$3"); then
        echo "POST $2 failed: $answer" >&2
        return 1
    fi
    printf '%s\n' "$answer"
}

grant_id=""
case $grants in
    other | consent)
        item=$([[ $grants == consent ]] && echo w1 || echo w2)
        grant=$(grant_call "$(api_key 'User::"olivia"')" /v1/consents "$(jq -nc \
            --arg grantee "$principal_uid" --arg resource "WorkItem::\"$item\"" \
            '{grantee: $grantee, actions: ["read"], resources: [$resource], duration: "2h",
              reason: "benches/load.sh"}')")
        grant_id=$(jq -r .id <<<"$grant")
        echo "grant: consent $grant_id ($(jq -r .state <<<"$grant")) from User::\"olivia\" to" \
            "$principal_uid, read on WorkItem::\"$item\"" \
            "($([[ $grants == consent ]] && echo covers || echo 'does not cover') the load's requests)"
        ;;
    elevation)
        grant=$(grant_call "$WRIT_TOKEN" /v1/break-glass \
            '{"role": "admin", "reason": "benches/load.sh", "duration": "2h"}')
        grant_id=$(jq -r .id <<<"$grant")
        grant=$(grant_call "$(api_key 'User::"olivia"')" "/v1/break-glass/$grant_id/approve" \
            '{"comment": "benches/load.sh"}')
        if [[ $(jq -r .state <<<"$grant") != active ]]; then
            echo "the elevation is not active after its approval: $grant" >&2
            exit 1
        fi
        echo "grant: elevation $grant_id (active) of $principal_uid to Role::\"admin\"," \
            "approved by User::\"olivia\""
        ;;
esac

# One authorize call with curl; prints the answer and fails unless it is a 200 allow.
authorize_once() {
    local answer
    answer=$(curl -sS --fail-with-body -X POST "$url/v1/authorize" \
        -H "Authorization: Bearer $WRIT_TOKEN" -H 'Content-Type: application/json' \
        -d '{"action":"read","resource":{"type":"WorkItem","id":"w1"}}')
    if [[ $(jq -r .decision <<<"$answer") != allow ]]; then
        echo "expected an allow, got: $answer" >&2
        return 1
    fi
    printf '%s\n' "$answer"
}

# The ledger index of a new decision: the number of entries recorded before it.
probe_index() {
    authorize_once | jq -r .decision_id
}

first=$(authorize_once)
entry_bytes=$(jq -r '.entry | length' <<<"$first")
named=$(jq -r '[.consent // empty, .elevation // empty] | join(",")' <<<"$first")
if [[ $grants == consent || $grants == elevation ]] && [[ $named != "$grant_id" ]]; then
    echo "the first answer does not name the grant $grant_id: $first" >&2
    exit 1
elif [[ $grants == none || $grants == other ]] && [[ -n $named ]]; then
    echo "the first answer names a grant it should not rely on: $first" >&2
    exit 1
fi
echo "principal: $principal_uid, grants: $grants"
echo "first answer: decision $(jq -r .decision <<<"$first"), reasons $(jq -c .reasons <<<"$first"), ledger entry $entry_bytes bytes, answer $(printf '%s' "$first" | wc -c) bytes"

# Runs wrk for $2 with $1 connections and prints its full output to $3; prints
# "<decisions/s> <p50 us> <p99 us> <requests> <non-200> <non-allow>".
run_wrk() {
    local conns=$1 length=$2 out=$3 wrk_threads=$threads
    if [[ $conns -lt $wrk_threads ]]; then wrk_threads=$conns; fi
    /usr/bin/time -f 'wrk cpu: %U user %S sys' -o "$out.time" \
        wrk -t"$wrk_threads" -c"$conns" -d"$length" --latency -s "$script" "$url" >"$out"
    awk '
        /requests in/ { requests = $1 }
        /^Requests\/sec:/ { rate = $2 }
        /^lua p50 us:/ { p50 = $4 }
        /^lua p99 us:/ { p99 = $4 }
        /^lua not 200:/ { not_ok = $4 }
        /^lua 200 but not allow:/ { not_allow = $6 }
        END { printf "%.0f %d %d %d %d %d\n", rate, p50, p99, requests, not_ok, not_allow }
    ' "$out"
}

# ---- The measured run --------------------------------------------------------

before=$(probe_index)
load_before=$(load_average)
cpu_before=$(server_cpu)
read -r busy_before total_before <<<"$(machine_jiffies)"
read -r rate p50 p99 requests not_ok not_allow <<<"$(run_wrk "$connections" "$duration" "$work/main.wrk")"
read -r busy_after total_after <<<"$(machine_jiffies)"
cpu_after=$(server_cpu)
load_after=$(load_average)
after=$(probe_index)
recorded=$((after - before - 1))

echo "authorize, $connections connections, $threads wrk threads, $duration: $rate decisions/s," \
    "p50 $(calc "%.2f" "u / 1000" "u=$p50") ms, p99 $(calc "%.2f" "u / 1000" "u=$p99") ms" \
    "(load average before $load_before, after $load_after)"
echo "  wrk latency distribution: $(awk '/Latency Distribution/ { on = 1; next } on && /%/ { printf "%s %s, ", $1, $2 } on && !/%/ { on = 0 }' "$work/main.wrk" | sed 's/, $//')"
echo "  answers: $requests, not 200: $not_ok, 200 but not allow: $not_allow;" \
    "ledger grew by $recorded between the probes ($((recorded - requests)) answered after wrk stopped counting)"
echo "  server cpu: $(calc "%.1f" "c1 - c0" "c1=$cpu_after" "c0=$cpu_before") s" \
    "= $(calc "%.0f" "(c1 - c0) * 1e6 / n" "c1=$cpu_after" "c0=$cpu_before" "n=$recorded") us per decision;" \
    "$(cat "$work/main.wrk.time");" \
    "machine busy $(calc "%.0f" "100 * (b1 - b0) / (t1 - t0)" "b1=$busy_after" "b0=$busy_before" "t1=$total_after" "t0=$total_before")% of 2 cores"
if [[ $not_ok -ne 0 || $not_allow -ne 0 || $recorded -lt $requests ]]; then
    echo "  FAILED: every answer must be a recorded allow" >&2
    cat "$work/main.wrk" >&2
    exit 1
fi

# ---- Other connection counts ---------------------------------------------------

for conns in $sweep; do
    read -r s_rate s_p50 s_p99 s_requests s_not_ok s_not_allow <<<"$(run_wrk "$conns" "$sweep_duration" "$work/sweep-$conns.wrk")"
    echo "authorize, $conns connections, $sweep_duration: $s_rate decisions/s," \
        "p50 $(calc "%.2f" "u / 1000" "u=$s_p50") ms, p99 $(calc "%.2f" "u / 1000" "u=$s_p99") ms," \
        "not 200: $s_not_ok, not allow: $s_not_allow (load average $(load_average))"
done

# ---- Up to DECISIONS decisions, then memory and disk -------------------------

index=$(probe_index)
while [[ $index -lt $decisions ]]; do
    remaining=$((decisions - index))
    seconds=$(calc "%.0f" "r / ${rate:-1000} + 2" "r=$remaining")
    if [[ $seconds -gt 300 ]]; then seconds=300; fi
    read -r _ _ _ _ fill_not_ok fill_not_allow <<<"$(run_wrk "$connections" "${seconds}s" "$work/fill.wrk")"
    if [[ $fill_not_ok -ne 0 || $fill_not_allow -ne 0 ]]; then
        echo "FAILED: $fill_not_ok answers not 200 and $fill_not_allow not allow while filling" >&2
        exit 1
    fi
    index=$(probe_index)
done
rss_kib=$(ps -o rss= -p "$server_pid" | tr -d ' ')
hwm_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status")
ledger_size=$(curl -sS "$url/metrics" | awk '/^writ_ledger_size / { print $2 }')
data_bytes=$(du -sb "$data" | cut -f1)
echo "memory after $index ledger entries: RSS $(calc "%.0f" "k / 1024" "k=$rss_kib") MiB" \
    "(peak $(calc "%.0f" "k / 1024" "k=$hwm_kib") MiB); writ_ledger_size $ledger_size (load average $(load_average))"
echo "data dir on disk: $(calc "%.0f" "b / 1048576" "b=$data_bytes") MiB" \
    "($(calc "%.0f" "b / n" "b=$data_bytes" "n=$index") bytes per entry; entries of $entry_bytes bytes)"
echo "  $(du -sh "$data"/* | awk '{ printf "%s %s, ", $2, $1 }' | sed "s#$data/##g; s/, $//")"

kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=""

# ---- The ledger alone, same writers and entry size ---------------------------

if [[ $ledger_bench == 1 ]]; then
    echo "ledger alone (writ ledger bench --writers $connections --entry-bytes $entry_bytes --entries 200000):" \
        "$("$writ" ledger bench --data "$work/ledger-only" --entries 200000 --writers "$connections" \
            --entry-bytes "$entry_bytes" --json |
            jq -r '"\(.entries_per_sec | floor) entries/s, p50 \(.p50_us) us, p99 \(.p99_us) us"')" \
        "(load average $(load_average))"
fi
