# shellcheck shell=bash disable=SC2154 # tmp, repo, cgroup_parent and the binaries are set by run.sh
# Helpers for tests/crio/run.sh: reporting, CRI-O and crictl, monitor processes and cleanup
# (polling, Jaeger and leftovers: tests/lib/e2e.sh). Sourced; expects $tmp, $repo,
# $cgroup_parent and the binary variables of run.sh.

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS $1 $2"; }
fail() {
    failed=$((failed + 1))
    echo "FAIL $1 $2: ${3:-failed}"
}
skip() { echo "SKIP $1 $2: $3"; }
note() { echo "# $*"; }

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

cleanup() {
    local rc=$? mnt
    set +e
    if [[ -n $crio_pid ]] && crio_up; then
        cri rmp -f -a >/dev/null 2>&1
    fi
    stop_crio
    kill_leftovers "$tmp/state/run/runc"
    stop_jaeger
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
