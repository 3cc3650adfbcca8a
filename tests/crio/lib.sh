# shellcheck shell=bash disable=SC2154 # tmp, repo, cgroup_parent and the binaries are set by run.sh
# Helpers for tests/crio/run.sh: reporting, polling, Jaeger, CRI-O and crictl, monitor
# processes and cleanup. Sourced; expects $tmp, $repo, $cgroup_parent and the binary
# variables of run.sh.

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS $1 $2"; }
fail() {
    failed=$((failed + 1))
    echo "FAIL $1 $2: ${3:-failed}"
}
skip() { echo "SKIP $1 $2: $3"; }
note() { echo "# $*"; }

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

# --- Jaeger (as tests/interop/jaeger_e2e.sh runs it: OTLP gRPC 14317, query 16686) --------
OTLP_HOST=127.0.0.1 OTLP_PORT=14317
QUERY=http://127.0.0.1:16686
jaeger_pid=

jaeger_ready() { port_open "$OTLP_HOST" "$OTLP_PORT" && curl -sf -o /dev/null "$QUERY/api/services"; }

# start_jaeger: sets jaeger_pid, or jaeger_error (run.sh reports it) and fails. With
# JAEGER_RUNNING=1 it uses a Jaeger already serving those ports (its traces outlive the check).
jaeger_error=
# shellcheck disable=SC2034
start_jaeger() {
    if [[ ${JAEGER_RUNNING:-0} == 1 ]]; then
        jaeger_ready || jaeger_error="JAEGER_RUNNING=1 but nothing answers on $OTLP_HOST:$OTLP_PORT and $QUERY"
        return
    fi
    if port_open "$OTLP_HOST" "$OTLP_PORT" || curl -s -o /dev/null "$QUERY/api/services"; then
        jaeger_error="$OTLP_HOST:$OTLP_PORT or $QUERY is already in use (jaeger_e2e.sh running?)"
        return 1
    fi
    "$JAEGER_BINARY" --config "$repo/tests/interop/jaeger-config.yaml" >"$tmp/jaeger.log" 2>&1 &
    jaeger_pid=$!
    if ! wait_for "$JAEGER_WAIT" jaeger_ready; then
        jaeger_error="not ready after ${JAEGER_WAIT}s: $(tail -n 3 "$tmp/jaeger.log" | tr '\n' ' ')"
        return 1
    fi
}

# --- CRI-O ---------------------------------------------------------------------------------
crio_pid=
crio_log=

# render_config HANDLER: writes $tmp/crio-HANDLER.conf from contrib/crio/check/crio.conf.in.
render_config() {
    sed -e "s|@TMP@|$tmp/state|g" \
        -e "s|@DEFAULT_RUNTIME@|$1|g" \
        -e "s|@LOG_LEVEL@|$CRIO_LOG_LEVEL|g" \
        -e "s|@PINNS@|$PINNS|g" \
        -e "s|@RUNTIME@|$tmp/runc|g" \
        -e "s|@CONMOND@|$CONMOND_BINARY|g" \
        -e "s|@CONMON@|$CONMON_BINARY|g" \
        -e "s|@OTLP_ENDPOINT@|$OTLP_HOST:$OTLP_PORT|g" \
        "$repo/contrib/crio/check/crio.conf.in" >"$tmp/crio-$1.conf"
    ! grep -n '@[A-Z_]*@' "$tmp/crio-$1.conf" >&2
}

# The runtime CRI-O and the monitors run: a wrapper that records each call's parent
# executable, arguments and environment (to see what conmond hands runc), then execs runc.
write_runtime_wrapper() {
    mkdir -p "$tmp/runc-calls"
    cat >"$tmp/runc" <<EOF
#!/bin/sh
{ echo "parent=\$(readlink /proc/\$PPID/exe)"; echo "args=\$*"; env; } >"$tmp/runc-calls/\$(date +%s%N).\$\$"
exec "$RUNC" "\$@"
EOF
    chmod +x "$tmp/runc"
}

# Files shared by both handlers' CRI-O: policy, registries, an empty drop-in dir, crictl config.
prepare_state() {
    mkdir -p "$tmp/state/cni/net.d" "$tmp/state/cni/bin" "$tmp/crio.conf.d" "$tmp/registries.conf.d"
    cp "$repo/contrib/crio/check/policy.json" "$tmp/state/policy.json"
    cp "$repo/contrib/crio/check/registries.conf" "$tmp/registries.conf"
    cat >"$tmp/crictl.yaml" <<EOF
runtime-endpoint: unix://$tmp/state/crio.sock
image-endpoint: unix://$tmp/state/crio.sock
timeout: 30
EOF
    write_runtime_wrapper
}

# crictl on our socket; its stderr (warnings, errors) goes to $tmp/cri.err, see cri_err.
cri() { "$CRICTL" --config "$tmp/crictl.yaml" "$@" 2>"$tmp/cri.err"; }
cri_err() { tr '\n' ' ' <"$tmp/cri.err" | tail -c 400; }
crio_up() { cri version >/dev/null 2>&1; }

# start_crio HANDLER: CRI-O in the background with that handler as default_runtime.
start_crio() {
    crio_log=$tmp/crio-$1.log
    "$CRIO" --config "$tmp/crio-$1.conf" --config-dir "$tmp/crio.conf.d" \
        --registries-conf "$tmp/registries.conf" --registries-conf-dir "$tmp/registries.conf.d" \
        >>"$crio_log" 2>&1 &
    crio_pid=$!
    wait_for "$CRIO_WAIT" crio_up
}

crio_gone() { ! kill -0 "$crio_pid" 2>/dev/null; }

# stop_crio: SIGTERM (CRI-O's clean shutdown leaves pods and monitors running), SIGKILL late.
stop_crio() {
    [[ -n $crio_pid ]] || return 0
    kill -TERM "$crio_pid" 2>/dev/null || true
    if ! wait_for 30 crio_gone; then
        kill -KILL "$crio_pid" 2>/dev/null || true
    fi
    wait "$crio_pid" 2>/dev/null || true
    crio_pid=
}

# The end of CRI-O's log and of the log of every conmond still there (without journald,
# conmond logs to conmond.log in its runtime dir, which goes away with the pod).
show_logs() {
    local f
    for f in "$crio_log" $(find "$tmp/state" -name conmond.log 2>/dev/null); do
        [[ -f $f ]] || continue
        echo "---- last lines of $f" >&2
        tail -n "${CRIO_LOG_LINES:-40}" "$f" >&2
    done
    echo "----" >&2
}

# --- processes -----------------------------------------------------------------------------
# monitors MONITOR_PATH ID: pids of processes started as MONITOR_PATH whose command line
# mentions ID (a pod id for conmond: its --runtime-dir; a container id for conmon: -c/-u).
monitors() {
    local f pid argv0
    for f in /proc/[0-9]*/cmdline; do
        pid=${f#/proc/}
        pid=${pid%/cmdline}
        argv0=$(tr '\0' '\n' 2>/dev/null <"$f" | head -n1) || continue
        [[ $argv0 == "$1" ]] || continue
        tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "$2" && echo "$pid"
    done
    return 0
}
no_monitors() { [[ -z $(monitors "$1" "$2") ]]; }

# Processes whose command line mentions our temp dir: monitors, runc, CRI-O.
pids_under_tmp() {
    local f pid
    for f in /proc/[0-9]*/cmdline; do
        pid=${f#/proc/}
        pid=${pid%/cmdline}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "$tmp" && echo "$pid"
    done
    return 0
}

cleanup() {
    local rc=$? pid id mnt
    set +e
    if [[ -n $crio_pid ]] && crio_up; then
        cri rmp -f -a >/dev/null 2>&1
    fi
    stop_crio
    for pid in $(pids_under_tmp); do kill -KILL "$pid" 2>/dev/null; done
    if [[ -d $tmp/state/run/runc ]]; then
        for id in $("$RUNC" --root "$tmp/state/run/runc" list -q 2>/dev/null); do
            "$RUNC" --root "$tmp/state/run/runc" delete --force "$id" >/dev/null 2>&1
        done
    fi
    if [[ -n $jaeger_pid ]]; then
        kill "$jaeger_pid" 2>/dev/null
        wait "$jaeger_pid" 2>/dev/null
    fi
    # The pods' cgroup tree in every v1 hierarchy, leaves first.
    find /sys/fs/cgroup/*/"${cgroup_parent#/}" -depth -type d -exec rmdir {} + 2>/dev/null
    # CRI-O's shm and namespace mounts, storage mounts: deepest first.
    awk -v t="$tmp/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r mnt; do umount -R "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null; done
    if [[ ${CRIO_CHECK_KEEP:-0} == 1 ]]; then
        echo "crio check: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
