# shellcheck shell=bash disable=SC2154,SC2015 # tmp is set by run.sh; pass/fail always succeed
# Trace checks of tests/crio/run.sh (conmond handler). Sourced after lib.sh.
#
# The runtime wrapper recorded every runc call with its parent and environment. Each call
# conmond made carries TRACEPARENT=00-<trace>-<span>-01 naming its `runtime <action>` span,
# so the trace of each `runc create`/`runc exec` is known exactly; Jaeger must hold, in
# one of them, the chain
#   crio  /runtime.v1.RuntimeService/CreateContainer   (CRI-O's gRPC server span)
#   crio  conmonrs-client: CreateContainer             (its conmon-rs client, a descendant)
#   conmond  Conmon/createContainer                    (direct child: context via metadata)
#   conmond  runtime create                            (descendant; the TRACEPARENT span)
# and the same for ExecSync / ExecSyncContainer / execSyncContainer / runtime exec. Also:
# conmond's RPC spans say it read the v0.6 request layout, its spans carry log events, and
# runc got TRACEPARENT but no lowercase traceparent (what a misread pre-1.0 request leaked:
# its trace metadata landed in v1.0's envVars slot).

# runc calls made by conmond: "<file>" per line.
conmond_runc_calls() { grep -lxF "parent=$CONMOND_BINARY" "$tmp"/runc-calls/* 2>/dev/null || true; }

# traceparent_of FILE: "<trace id> <span id>" of the call's TRACEPARENT (empty if none).
traceparent_of() {
    sed -n 's/^TRACEPARENT=00-\([0-9a-f]\{32\}\)-\([0-9a-f]\{16\}\)-0[01]$/\1 \2/p' "$1" | head -n1
}

# chain TRACE_FILE SPAN ROOT CLIENT RPC RUNTIME: "ok <path>" if span SPAN's ancestry is the
# chain above, else "broken: <path>" (path: service/operation from SPAN up to the root).
chain() {
    jq -r --arg s "$2" --arg root "crio/$3" --arg client "crio/$4" --arg rpc "conmond/$5" --arg rt "conmond/$6" '
        .data[0] as $t
        | ($t.spans | map({key: .spanID, value: .}) | from_entries) as $by
        | def par: [.references[]? | select(.refType == "CHILD_OF") | $by[.spanID] | select(. != null)][0];
          def name: "\($t.processes[.processID].serviceName)/\(.operationName)";
        if $by[$s] == null then "broken: span \($s) not in trace"
        else [$by[$s] | recurse(par; . != null) | name] as $path
            | ($path | index($rpc)) as $i
            | (if $path[0] != $rt or $i == null or $path[$i + 1] != $client
                  or ($path[$i + 2:] | index($root)) == null then "broken: " else "ok " end)
              + ($path | join(" <- "))
        end' "$1" 2>/dev/null || echo "broken: unreadable trace"
}

# fetch TRACE_ID: stores the trace in $tmp/trace-ID.json; fails while Jaeger lacks it.
fetch() { curl -sf "$QUERY/api/traces/$1" -o "$tmp/trace-$1.json" && jq -e '.data[0].spans | length > 0' "$tmp/trace-$1.json" >/dev/null; }

# try_chain ACTION ROOT CLIENT RPC: checks the traces of conmond's `runc ACTION` calls for
# the chain; sets chain_result and chain_trace (the last trace looked at).
try_chain() {
    local f tp id span r
    for f in $(conmond_runc_calls); do
        grep -q "^args=.* $1 " "$f" || continue
        tp=$(traceparent_of "$f")
        [[ -n $tp ]] || continue
        read -r id span <<<"$tp"
        fetch "$id" || { chain_result="broken: trace $id (runc $1) not in Jaeger"; continue; }
        r=$(chain "$tmp/trace-$id.json" "$span" "$2" "$3" "$4" "runtime $1")
        chain_result="$r (trace $id)" chain_trace=$id
        [[ $r == ok* ]] && return 0
    done
    return 1
}

# find_chain ACTION ROOT CLIENT RPC: polls try_chain until JAEGER_WAIT (exporters batch).
find_chain() {
    chain_result="broken: no runc $1 call by conmond with a TRACEPARENT" chain_trace=
    wait_for "$JAEGER_WAIT" try_chain "$@"
}

check_traces() {
    local h=$1 calls f bad=() lower=() r ids=()
    calls=$(conmond_runc_calls)
    if [[ -z $calls ]]; then
        fail "$h" "runc calls by conmond recorded" "none in $tmp/runc-calls with parent $CONMOND_BINARY"
        return 0
    fi
    for f in $calls; do
        grep -q '^TRACEPARENT=00-' "$f" || bad+=("$(sed -n 's/^args=//p' "$f")")
        grep -q '^traceparent=' "$f" && lower+=("$(sed -n 's/^args=//p' "$f")")
    done
    ((${#bad[@]} == 0)) && pass "$h" "every runc call by conmond ($(wc -w <<<"$calls")) has TRACEPARENT" \
        || fail "$h" "TRACEPARENT on conmond's runc calls" "missing on: ${bad[*]}"
    ((${#lower[@]} == 0)) && pass "$h" "no lowercase traceparent= in any runc call by conmond" \
        || fail "$h" "lowercase traceparent" "set on: ${lower[*]}"

    if find_chain create /runtime.v1.RuntimeService/CreateContainer "conmonrs-client: CreateContainer" Conmon/createContainer; then
        pass "$h" "trace: ${chain_result#ok }"
    else
        fail "$h" "trace CreateContainer -> conmonrs-client -> Conmon/createContainer -> runtime create" "$chain_result"
    fi
    [[ -z $chain_trace ]] || ids+=("$chain_trace")
    if find_chain exec /runtime.v1.RuntimeService/ExecSync "conmonrs-client: ExecSyncContainer" Conmon/execSyncContainer; then
        pass "$h" "trace: ${chain_result#ok }"
    else
        fail "$h" "trace ExecSync -> conmonrs-client -> Conmon/execSyncContainer -> runtime exec" "$chain_result"
    fi
    [[ -z $chain_trace ]] || ids+=("$chain_trace")

    # CRI-O 1.34's client (conmon-rs v0.6.6) sends the pre-1.0 request layout; conmond names
    # the layout it read on each RPC span.
    r=$(for id in "${ids[@]}"; do
        jq -r '.data[0].spans[] | select(.operationName | startswith("Conmon/"))
            | "\(.operationName)=\([.tags[] | select(.key == "rpc.conmon.layout") | .value][0])"' "$tmp/trace-$id.json"
    done | sort -u | paste -sd ' ')
    [[ -n $r && $r != *=null* && $(grep -o '=[^ ]*' <<<"$r" | sort -u) == "=v0.6" ]] \
        && pass "$h" "requests read in conmon-rs's v0.6 layout (rpc.conmon.layout: $r)" \
        || fail "$h" "request layout" "want rpc.conmon.layout v0.6 on every Conmon/* span, have: ${r:-no spans}"

    # Log records as span events on conmond's spans (Jaeger "logs"), in the traces above.
    r=none
    for id in "${ids[@]}"; do
        r=$(jq -r '[.data[0] as $t | $t.spans[] | select($t.processes[.processID].serviceName == "conmond")
                | . as $s | .logs[]? | select(any(.fields[]; .key == "log.severity" or (.key == "event" and .value == "log")))
                | "\($s.operationName): \([.fields[] | select(.key != "event") | "\(.key)=\(.value)"] | join(" "))"]
            | if length == 0 then "none" else "ok \(length) e.g. \(.[0])" end' "$tmp/trace-$id.json")
        [[ $r == ok* ]] && break
    done
    [[ $r == ok* ]] && pass "$h" "log events on conmond spans (${r#ok })" \
        || fail "$h" "log events on conmond spans" "none in traces ${ids[*]:-(none fetched)}"
    # Each trace drawn as a waterfall in the check's output, from Jaeger's query API: CRI-O's
    # spans and conmond's in one picture.
    for id in "${ids[@]}"; do
        note "trace: $QUERY/trace/$id (no UI in a Go-built Jaeger; the API answers)"
        COLUMNS=160 "$SHIM_BINARY" trace "$id" --jaeger "$QUERY" | sed 's/^/#   /' ||
            fail "$h" "runtime-shim trace $id" "could not draw it"
    done
}
