#!/usr/bin/env bash
# End to end: traces from runtime-shim + conmond, and from conmon-rs's Go client +
# conmond (client v1.0.1 and v0.6.6, each its own trace and service.name), land in a real
# Jaeger v2 (all-in-one, in-memory storage, loopback only) and are checked through
# Jaeger's query API.
#
# Usage (as root): bash tests/interop/jaeger_e2e.sh
# Env: CONMOND_BINARY, SHIM_BINARY (default ../../target/debug/{conmond,runtime-shim}),
#      RUNTIME_BINARY (default /usr/sbin/runc), JAEGER_BINARY (default: built/cached by
#      scripts/jaeger-install), JAEGER_WAIT (seconds, default 60).
# Prints PASS/FAIL per check, each trace drawn by `runtime-shim trace`, and as the last line
# "jaeger-e2e: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$here"

[[ $(id -u) == 0 ]] || { echo "jaeger_e2e.sh: must run as root (runc containers, cgroups)" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin"

CONMOND_BINARY=${CONMOND_BINARY:-$repo/target/debug/conmond}
SHIM_BINARY=${SHIM_BINARY:-$repo/target/debug/runtime-shim}
RUNC=${RUNTIME_BINARY:-/usr/sbin/runc}
JAEGER_WAIT=${JAEGER_WAIT:-60}
export CONMOND_BINARY

for bin in "$CONMOND_BINARY" "$SHIM_BINARY" "$RUNC"; do
    [[ -x $bin ]] || { echo "jaeger_e2e.sh: missing executable $bin (cargo build --workspace?)" >&2; exit 1; }
done
command -v go >/dev/null || { echo "jaeger_e2e.sh: go toolchain not found" >&2; exit 1; }
command -v curl >/dev/null || { echo "jaeger_e2e.sh: curl not found" >&2; exit 1; }
if ! command -v jq >/dev/null; then
    apt-get install -y jq >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y jq >/dev/null; }
fi

if [[ -z ${JAEGER_BINARY:-} ]]; then
    JAEGER_BINARY=$("$repo/scripts/jaeger-install" | tail -n1)
fi
[[ -x $JAEGER_BINARY ]] || { echo "jaeger_e2e.sh: no jaeger binary at $JAEGER_BINARY" >&2; exit 1; }

tmp=$(mktemp -d /tmp/jaeger-e2e.XXXXXX)
passed=0 failed=0
# shellcheck source=tests/lib/e2e.sh
source "$repo/tests/lib/e2e.sh"

cleanup() {
    local rc=$?
    set +e
    kill_leftovers "$tmp/shim/runc"
    stop_jaeger
    if [[ $failed == 0 && $rc == 0 ]]; then
        rm -rf "$tmp"
    else
        echo "jaeger_e2e.sh: kept $tmp for inspection (jaeger log: $tmp/jaeger.log)" >&2
    fi
}
trap cleanup EXIT

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1${2:+: $2}"; }

# --- Jaeger ------------------------------------------------------------------------
start_jaeger || { echo "jaeger_e2e.sh: jaeger: $jaeger_error" >&2; exit 1; }
echo "jaeger $(basename "$(dirname "$JAEGER_BINARY")") up (pid $jaeger_pid): OTLP gRPC $OTLP_HOST:$OTLP_PORT, query $QUERY: $(curl -s "$QUERY/api/services")"

# --- a. runtime-shim pod lifecycle under one TRACEPARENT ---------------------------
mkdir -p "$tmp/shim/crio.conf.d"
cat >"$tmp/shim/crio.conf" <<CONF
[crio.runtime]
default_runtime = "runc-pod"
cgroup_manager = "cgroupfs"
[crio.runtime.runtimes.runc-pod]
runtime_type = "pod"
runtime_path = "$RUNC"
runtime_root = "$tmp/shim/runc"
monitor_path = "$CONMOND_BINARY"
monitor_env = ["LOG_DRIVER=stdout"]
[crio.tracing]
enable_tracing = true
tracing_endpoint = "$OTLP_HOST:$OTLP_PORT"
tracing_sampling_rate_per_million = 1000000
CONF

hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
shim_trace=$(hex 16)
export TRACEPARENT="00-$shim_trace-$(hex 8)-01"
ctr="jaeger-e2e-$$-ctr"
shim() {
    echo "+ runtime-shim $*"
    "$SHIM_BINARY" --config "$tmp/shim/crio.conf" --config-dir "$tmp/shim/crio.conf.d" \
        --root "$tmp/shim/state" --log-level info "$@"
}
shim_ok=1
{
    shim pod run p1 &&
        shim create p1 "$ctr" -- sh -c 'trap "exit 0" TERM; sleep 1000 & wait' &&
        shim start "$ctr" &&
        [[ $(shim exec "$ctr" -- echo hi | tail -n1) == hi ]] &&
        shim stop "$ctr" &&
        shim rm "$ctr" &&
        shim pod rm p1
} >"$tmp/shim.log" 2>&1 || shim_ok=0
unset TRACEPARENT
if [[ $shim_ok == 1 ]]; then
    pass "shim: pod lifecycle (pod run, create, start, exec, stop, rm, pod rm)"
else
    fail "shim: pod lifecycle" "$(tail -n 20 "$tmp/shim.log")"
fi

# --- b. conmon-rs Go client lifecycles with tracing, one per client generation -------
# v1.0.1 (go.mod) and v0.6.6 (go.v0.6.mod; CRI-O <= 1.34, the pre-1.0 request layout). Each
# run is its own trace, and its client spans carry service.name conmon-rs-go-client-<version>.
go_versions=(v1.0.1 v0.6.6)
declare -A go_flags=([v1.0.1]="" [v0.6.6]="-modfile=go.v0.6.mod -tags conmonrs_v06")
declare -A go_trace=()
for version in "${go_versions[@]}"; do
    log=$tmp/go-$version.log
    go_ok=1
    # shellcheck disable=SC2086 # go_flags holds separate words
    JAEGER_OTLP_ENDPOINT="$OTLP_HOST:$OTLP_PORT" go test ${go_flags[$version]} -count=1 \
        -run '^TestJaegerTrace$' -v . >"$log" 2>&1 || go_ok=0
    id=$(sed -n 's/^TRACE_ID=\([0-9a-f]\{32\}\)$/\1/p' "$log" | head -n1)
    if [[ $go_ok == 1 ]] && grep -q '^--- PASS: TestJaegerTrace' "$log" && [[ -n $id ]]; then
        go_trace[$version]=$id
        pass "go client $version: TestJaegerTrace (Version, CreateContainer, ExecSyncContainer$(
            [[ $version == v0.6.6 ]] || echo ", ServeExecContainer"))"
    else
        fail "go client $version: TestJaegerTrace" "$(tail -n 40 "$log")"
    fi
done

# --- c. the traces in Jaeger ---------------------------------------------------------
# Waits until trace $1 holds spans of services $2 and conmond, including the
# operations $3... (all of them: conmond and the clients export in batches).
fetch_trace() {
    local id=$1 svc=$2 out=$tmp/trace-$1.json
    shift 2
    local want
    want=$(printf '%s\n' "$@" | jq -R . | jq -sc .)
    local deadline=$((SECONDS + JAEGER_WAIT))
    while :; do
        if curl -sf "$QUERY/api/traces/$id" -o "$out" 2>/dev/null &&
            jq -e --arg svc "$svc" --argjson want "$want" '
                .data[0] as $t
                | ([$t.processes[].serviceName] | (index($svc) != null and index("conmond") != null))
                  and ([$t.spans[].operationName] as $ops | all($want[]; . as $w | $ops | index($w) != null))
            ' "$out" >/dev/null 2>&1; then
            return 0
        fi
        ((SECONDS < deadline)) || return 1
        sleep 0.25
    done
}

# Prints the trace as "service  operation  (parent: service/operation | MISSING <id>)".
show_trace() {
    jq -r '.data[0] as $t
        | ($t.spans | map({key: .spanID, value: .}) | from_entries) as $by
        | $t.spans | sort_by(.startTime)[]
        | . as $s
        | ([.references[]? | select(.refType == "CHILD_OF") | .spanID][0]) as $p
        | "  \($t.processes[$s.processID].serviceName)\t\($s.operationName)\t"
          + (if $p == null then "(root)"
             elif $by[$p] then "(parent: \($t.processes[$by[$p].processID].serviceName)/\($by[$p].operationName))"
             else "(parent MISSING: \($p))" end)
          + (if (.logs | length) > 0 then "\t[\(.logs | length) logs]" else "" end)' "$1"
}

check_trace() {
    local label=$1 id=$2 svc=$3
    shift 3
    local out=$tmp/trace-$id.json r
    echo "== $label trace $id"
    if ! fetch_trace "$id" "$svc" "$@"; then
        fail "$label: trace $id with spans of $svc and conmond (incl. $*) in Jaeger within ${JAEGER_WAIT}s" \
            "$(jq -c '[.data[0].spans[]? | .operationName]' "$out" 2>/dev/null || echo 'no trace')"
        [[ -s $out ]] && show_trace "$out"
        return 0
    fi
    pass "$label: trace $id reached Jaeger with spans of $svc and conmond"
    show_trace "$out"
    # Jaeger's own diagnostics per span (e.g. a parent span id it never received:
    # expected for the runtime-shim roots, whose parent is the made-up TRACEPARENT span).
    jq -r '.data[0] as $t | $t.spans[] | select(.warnings != null and (.warnings | length) > 0)
        | "  NOTE jaeger warning on \($t.processes[.processID].serviceName)/\(.operationName): \(.warnings | join("; "))"' "$out"

    r=$(jq -r --arg svc "$svc" '[.data[0].processes[].serviceName] | unique
        | if index($svc) != null and index("conmond") != null then "ok" else "services: \(.)" end' "$out")
    [[ $r == ok ]] && pass "$label: services $svc and conmond in .data[0].processes" || fail "$label: services" "$r"

    # Every conmond RPC span (Conmon/<method>) has a CHILD_OF reference to a span in the trace.
    r=$(jq -r '.data[0] as $t
        | ([$t.spans[].spanID]) as $ids
        | [$t.spans[] | select($t.processes[.processID].serviceName == "conmond" and (.operationName | startswith("Conmon/")))] as $rpc
        | [$rpc[] | select([.references[]? | select(.refType == "CHILD_OF" and .traceID == $t.traceID) | .spanID
                            | . as $p | $ids | index($p) != null] | any | not)
           | "\(.operationName) \(.spanID) refs=\(.references | tojson)"] as $bad
        | if ($rpc | length) == 0 then "no conmond Conmon/* span"
          elif ($bad | length) > 0 then "orphaned: \($bad | join("; "))"
          else "ok \($rpc | length)" end' "$out")
    [[ $r == ok* ]] && pass "$label: every conmond Conmon/* span has its CHILD_OF parent in the trace (${r#ok })" \
        || fail "$label: conmond parent links" "$r"

    # conmond's exec span exists and hangs under a span of the client service.
    local op
    for op in "$@"; do
        [[ $op == Conmon/* ]] || continue
        r=$(jq -r --arg op "$op" --arg svc "$svc" '.data[0] as $t
            | ($t.spans | map({key: .spanID, value: .}) | from_entries) as $by
            | [$t.spans[] | select(.operationName == $op and $t.processes[.processID].serviceName == "conmond")]
            | if length == 0 then "no \($op) span of conmond"
              else map([.references[]? | select(.refType == "CHILD_OF") | $by[.spanID]]
                       | map(select(. != null)) | first
                       | if . == null then "no parent in trace"
                         else "\($t.processes[.processID].serviceName)/\(.operationName)" end)
                   | if all(startswith($svc + "/")) then "ok \(join(", "))" else "parents: \(join(", "))" end
              end' "$out")
        [[ $r == ok* ]] && pass "$label: conmond $op is a child of a $svc span (${r#ok })" \
            || fail "$label: parent of conmond $op" "$r"
    done

    # At least one span carries a log record as a span event (Jaeger "logs" with fields).
    r=$(jq -r '[.data[0] as $t | $t.spans[] | . as $s | .logs[]?
            | select(any(.fields[]; .key == "log.severity" or (.key == "event" and .value == "log")))
            | "\($t.processes[$s.processID].serviceName)/\($s.operationName): \([.fields[] | select(.key != "event") | "\(.key)=\(.value)"] | join(" "))"]
        | if length == 0 then "none" else "ok \(length) \(.[0])" end' "$out")
    [[ $r == ok* ]] && pass "$label: log records as span events (${r#ok })" || fail "$label: log events on spans" "$r"

    check_waterfall "$label" "$id" "$svc" "$@"
}

# runtime-shim trace draws trace $2 from Jaeger's query API: one line per span (as many as
# Jaeger holds), lines of both services ($3 and conmond), the operations $4... each on a line
# of its service; --format json holds the same spans.
check_waterfall() {
    local label=$1 id=$2 svc=$3 drawn=$tmp/waterfall-$2.txt n r op
    shift 3
    if ! COLUMNS=200 "$SHIM_BINARY" trace "$id" --jaeger "$QUERY" >"$drawn" 2>&1; then
        fail "$label: runtime-shim trace $id" "$(cat "$drawn")"
        return 0
    fi
    sed 's/^/   /' "$drawn"
    n=$(jq '.data[0].spans | length' "$tmp/trace-$id.json")
    r=ok
    [[ $(grep -c '│' "$drawn") == "$n" ]] || r="$(grep -c '│' "$drawn") span lines for $n spans"
    for service in "$svc" conmond; do
        grep -qE " $service +│" "$drawn" || r="no line of $service"
    done
    for op in "$@"; do
        grep -qE "^ *$op .* conmond +│" "$drawn" || r="no line for conmond's $op"
    done
    grep -qF '◆ +' "$drawn" || r="no log event under a span"
    [[ $r == ok ]] && pass "$label: runtime-shim trace draws $n spans, both services, ${*}" \
        || fail "$label: runtime-shim trace $id" "$r"
    r=$("$SHIM_BINARY" trace "$id" --jaeger "$QUERY" --format json |
        jq -r --argjson n "$n" '[.roots | .. | objects | select(has("children"))] as $spans
            | if .span_count == $n and ($spans | length) == $n then "ok"
              else "span_count \(.span_count), \($spans | length) nodes for \($n) spans" end' 2>&1)
    [[ $r == ok ]] && pass "$label: runtime-shim trace --format json holds the $n spans" \
        || fail "$label: runtime-shim trace --format json" "$r"
}

check_trace "runtime-shim" "$shim_trace" runtime-shim Conmon/createContainer Conmon/execSyncContainer

# The container's exit is a trace of its own (conmond's "container exit" span), linked to the
# create span in the shim's trace; drawn, the link names that trace.
find_exit_trace() {
    exit_trace=$(curl -sf "$QUERY/api/traces?service=conmond&operation=container%20exit&lookback=1h&limit=50" |
        jq -r --arg t "$shim_trace" '[.data[]? | select(any(.spans[].references[]?; .traceID == $t))
            | .traceID][0] // empty' 2>/dev/null)
    [[ -n $exit_trace ]]
}
exit_trace=
if wait_for "$JAEGER_WAIT" find_exit_trace; then
    drawn=$tmp/waterfall-exit.txt
    COLUMNS=200 "$SHIM_BINARY" trace "$exit_trace" --jaeger "$QUERY" >"$drawn" 2>&1 || true
    sed 's/^/   /' "$drawn"
    if grep -qE "^container exit .* conmond +│" "$drawn" && grep -qF "↪ links to span " "$drawn" &&
        grep -qF "of trace $shim_trace" "$drawn"; then
        pass "runtime-shim: the container exit trace $exit_trace is drawn with its link to trace $shim_trace"
    else
        fail "runtime-shim: container exit trace drawn with its link" "$(cat "$drawn")"
    fi
else
    fail "runtime-shim: a conmond container exit trace linked to trace $shim_trace" "none in Jaeger within ${JAEGER_WAIT}s"
fi

# The checks of one Go client generation's trace ($1: version, $2: trace id).
check_go_trace() {
    local version=$1 id=$2 svc=conmon-rs-go-client-$1 out=$tmp/trace-$2.json layout r
    local ops=(Conmon/createContainer Conmon/execSyncContainer)
    # v0.6.6 has no Serve* calls; v1.0.1's trace has a streaming exec.
    [[ $version == v0.6.6 ]] || ops+=(Conmon/serveExecContainer "stream exec" "runtime exec")
    check_trace "go-client $version" "$id" "$svc" "${ops[@]}"

    # The trace is this generation's alone: no span of the other client's service.
    r=$(jq -r --arg svc "$svc" '[.data[0].processes[].serviceName | select(startswith("conmon-rs-go-client") and . != $svc)]
        | unique | if length == 0 then "ok" else "other clients: \(join(", "))" end' "$out" 2>/dev/null || echo "no trace")
    [[ $r == ok ]] && pass "go-client $version: no other client generation's spans in trace $id" \
        || fail "go-client $version: spans of one client generation" "$r"

    # conmond read every request in the layout this client writes (its rpc.conmon.layout tag).
    layout=v1.0
    [[ $version != v0.6.6 ]] || layout=v0.6
    r=$(jq -r --arg layout "$layout" '.data[0] as $t
        | [$t.spans[] | select($t.processes[.processID].serviceName == "conmond" and (.operationName | startswith("Conmon/")))
           | {op: .operationName, layout: ([.tags[]? | select(.key == "rpc.conmon.layout") | .value][0])}] as $rpc
        | [$rpc[] | select(.layout != $layout) | "\(.op)=\(.layout)"] as $bad
        | if ($rpc | length) == 0 then "no conmond Conmon/* span"
          elif ($bad | length) > 0 then "other layouts: \($bad | join(", "))"
          else "ok \($rpc | length)" end' "$out" 2>/dev/null || echo "no trace")
    [[ $r == ok* ]] && pass "go-client $version: conmond read all ${r#ok } requests as the $layout layout" \
        || fail "go-client $version: rpc.conmon.layout $layout on conmond's Conmon/* spans" "$r"

    if [[ $version != v0.6.6 ]]; then
        # The streaming session runs after its RPC returned, as that RPC's child, and runs the runtime.
        r=$(jq -r '.data[0] as $t
            | ($t.spans | map({key: .spanID, value: .}) | from_entries) as $by
            | def parent: [.references[]? | select(.refType == "CHILD_OF") | $by[.spanID] | select(. != null)][0];
            [$t.spans[] | select(.operationName == "stream exec")] as $streams
            | [$t.spans[] | select(.operationName == "runtime exec" and (parent | .operationName) == "stream exec")] as $runs
            | if ($streams | length) == 1 and ($streams[0] | parent | .operationName) == "Conmon/serveExecContainer"
                 and ($runs | length) == 1
              then "ok" else "stream exec parents: \([$streams[] | parent | .operationName?] | tojson), runtime exec under it: \($runs | length)" end' \
            "$out" 2>/dev/null || echo "no trace")
        [[ $r == ok* ]] && pass "go-client $version: stream exec is a child of Conmon/serveExecContainer and runs runtime exec" \
            || fail "go-client $version: stream exec span parent" "$r"
    fi

    # The Go client's spans are "conmonrs-client: <Method>", of this generation's service.
    r=$(jq -r --arg svc "$svc" '.data[0] as $t
        | ($t.spans | map({key: .spanID, value: .}) | from_entries) as $by
        | [$t.spans[] | select(.operationName == "Conmon/createContainer")
           | [.references[]? | select(.refType == "CHILD_OF") | $by[.spanID] | select(. != null)
              | "\($t.processes[.processID].serviceName)/\(.operationName)"][0]]
        | if length > 0 and all(. != null and startswith($svc + "/conmonrs-client: ")) then "ok \(join(", "))"
          else "parents: \(tojson)" end' "$out" 2>/dev/null || echo "no trace")
    [[ $r == ok* ]] && pass "go-client $version: conmond Conmon/createContainer parent is the client span (${r#ok })" \
        || fail "go-client $version: Conmon/createContainer parent is a $svc conmonrs-client span" "$r"
}

ids="runtime-shim $shim_trace"
for version in "${go_versions[@]}"; do
    if [[ -n ${go_trace[$version]:-} ]]; then
        check_go_trace "$version" "${go_trace[$version]}"
        ids+=", go-client $version ${go_trace[$version]}"
    else
        fail "go-client $version: trace checks" "no TRACE_ID from TestJaegerTrace"
    fi
done
if [[ -n ${go_trace[v1.0.1]:-} && ${go_trace[v1.0.1]} == "${go_trace[v0.6.6]:-}" ]]; then
    fail "go clients: one trace per generation" "both runs reported trace ${go_trace[v1.0.1]}"
fi

# Drawn above by runtime-shim trace; this Jaeger (built from its Go module) has no web UI.
echo "trace ids: $ids"
echo "jaeger-e2e: $passed passed, $failed failed"
[[ $failed == 0 ]]
