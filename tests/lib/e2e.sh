# shellcheck shell=bash disable=SC2154,SC2034 # tmp, repo, RUNC, JAEGER_* come from the caller, which reads jaeger_*
# Shared by the end-to-end scripts (tests/interop/jaeger_e2e.sh, tests/crio/run.sh): polling,
# a Jaeger v2 on loopback, and cleaning up what a run left under its temp dir. Sourced; the
# caller sets tmp, repo, RUNC, JAEGER_BINARY and JAEGER_WAIT.

# Where tests/interop/jaeger-config.yaml has Jaeger listen.
OTLP_HOST=127.0.0.1 OTLP_PORT=14317
QUERY=http://127.0.0.1:16686
jaeger_pid=
jaeger_error=

# wait_for SECONDS CMD...: runs CMD every 0.1 s until it succeeds; 1 when the deadline passes.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

jaeger_ready() { port_open "$OTLP_HOST" "$OTLP_PORT" && curl -sf -o /dev/null "$QUERY/api/services"; }
jaeger_ready_or_gone() { jaeger_ready || ! kill -0 "$jaeger_pid" 2>/dev/null; }

# start_jaeger: runs Jaeger (log in $tmp/jaeger.log) and sets jaeger_pid; on failure sets
# jaeger_error and returns 1. With JAEGER_RUNNING=1 it uses a Jaeger already serving those
# ports instead (its traces outlive the run).
start_jaeger() {
    if [[ ${JAEGER_RUNNING:-0} == 1 ]]; then
        jaeger_ready && return
        jaeger_error="JAEGER_RUNNING=1 but nothing answers on $OTLP_HOST:$OTLP_PORT and $QUERY"
        return 1
    fi
    if port_open "$OTLP_HOST" "$OTLP_PORT" || curl -s -o /dev/null "$QUERY/api/services"; then
        jaeger_error="$OTLP_HOST:$OTLP_PORT or $QUERY is already in use (another end-to-end run?)"
        return 1
    fi
    "$JAEGER_BINARY" --config "$repo/tests/interop/jaeger-config.yaml" >"$tmp/jaeger.log" 2>&1 &
    jaeger_pid=$!
    wait_for "$JAEGER_WAIT" jaeger_ready_or_gone
    if ! kill -0 "$jaeger_pid" 2>/dev/null; then
        jaeger_error="exited before it was ready: $(tail -n 5 "$tmp/jaeger.log" | tr '\n' ' ')"
        return 1
    fi
    if ! jaeger_ready; then
        jaeger_error="not ready after ${JAEGER_WAIT}s: $(tail -n 3 "$tmp/jaeger.log" | tr '\n' ' ')"
        return 1
    fi
}

stop_jaeger() {
    [[ -n $jaeger_pid ]] || return 0
    kill "$jaeger_pid" 2>/dev/null
    wait "$jaeger_pid" 2>/dev/null
    jaeger_pid=
}

# Processes whose command line mentions the temp dir: monitors, containers' runtimes.
pids_under_tmp() {
    local f pid
    for f in /proc/[0-9]*/cmdline; do
        pid=${f#/proc/}; pid=${pid%/cmdline}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "$tmp" && echo "$pid"
    done
    return 0
}

# kill_leftovers RUNC_ROOT: kills what still runs from the temp dir and deletes the
# containers runc still knows under RUNC_ROOT.
kill_leftovers() {
    local pid id
    for pid in $(pids_under_tmp); do kill -KILL "$pid" 2>/dev/null; done
    [[ -d $1 ]] || return 0
    for id in $("$RUNC" --root "$1" list -q 2>/dev/null); do
        "$RUNC" --root "$1" delete --force "$id" >/dev/null 2>&1
    done
}
