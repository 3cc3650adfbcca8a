#!/usr/bin/env bash
# Real CRI-O 1.34 with conmond as its pod monitor, driven through crictl, with Debian's C
# conmon (handler `oci`) as the control. For each handler: CRI-O is started with that
# handler as default_runtime (a dropped infra container takes its monitor from the default
# handler), a pod and two busybox containers go through the whole CRI lifecycle, CRI-O is
# restarted under a running pod, and for conmond the traces CRI-O and conmond export to a
# real Jaeger v2 are checked (tests/crio/traces.sh).
#
# Usage (as root): bash tests/crio/run.sh
# Env: CONMOND_BINARY (default target/debug/conmond), SHIM_BINARY (target/debug/runtime-shim,
#      which draws the checked traces), CONMON_BINARY (/usr/bin/conmon),
#      RUNTIME_BINARY (/usr/sbin/runc), CRIO_HANDLERS ("conmond oci"),
#      CRIO_BINARY/CRICTL_BINARY/PINNS_BINARY and JAEGER_BINARY (default: built and cached
#      by scripts/crio-install and scripts/jaeger-install), CRIO_LOG_LEVEL (info),
#      CRIO_WAIT/JAEGER_WAIT (seconds, 60), CRIO_CHECK_KEEP=1 keeps the temp dir,
#      JAEGER_RUNNING=1 uses a Jaeger already on tests/interop/jaeger-config.yaml's ports.
# Prints "PASS|FAIL <handler> <step>[: why]" per step (SKIP for conmond-only steps under
# oci) and as the last line "crio: N passed, M failed"; exits non-zero on any failure.
# pass/fail always succeed, so "cond && pass || fail" is an if-then-else here (SC2015);
# predicates run through wait_for look unreachable to shellcheck (SC2317).
# shellcheck disable=SC2015,SC2317
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
[[ $(id -u) == 0 ]] || { echo "tests/crio/run.sh: must run as root" >&2; exit 1; }

CONMOND_BINARY=$(realpath "${CONMOND_BINARY:-$repo/target/debug/conmond}")
SHIM_BINARY=${SHIM_BINARY:-$repo/target/debug/runtime-shim}
CONMON_BINARY=${CONMON_BINARY:-/usr/bin/conmon}
RUNC=${RUNTIME_BINARY:-/usr/sbin/runc}
CRIO_HANDLERS=${CRIO_HANDLERS:-conmond oci}
CRIO_LOG_LEVEL=${CRIO_LOG_LEVEL:-info}
CRIO_WAIT=${CRIO_WAIT:-60}
JAEGER_WAIT=${JAEGER_WAIT:-60}
for tool in curl jq skopeo; do
    command -v "$tool" >/dev/null || { echo "tests/crio/run.sh: $tool not found (scripts/setup)" >&2; exit 1; }
done
if [[ -z ${CRIO_BINARY:-} || -z ${CRICTL_BINARY:-} || -z ${PINNS_BINARY:-} ]]; then
    cache=$("$repo/scripts/crio-install" | tail -n1)
fi
CRIO=${CRIO_BINARY:-$cache/crio}
CRICTL=${CRICTL_BINARY:-$cache/crictl}
PINNS=${PINNS_BINARY:-$cache/pinns}
[[ ${JAEGER_RUNNING:-0} == 1 ]] || JAEGER_BINARY=${JAEGER_BINARY:-$("$repo/scripts/jaeger-install" | tail -n1)}
for bin in "$CONMOND_BINARY" "$SHIM_BINARY" "$CONMON_BINARY" "$RUNC" "$CRIO" "$CRICTL" "$PINNS" ${JAEGER_BINARY:+"$JAEGER_BINARY"}; do
    [[ -x $bin ]] || { echo "tests/crio/run.sh: missing executable $bin (cargo build -p conmon?)" >&2; exit 1; }
done

# Short: attach socket paths under it must fit 107 bytes (see crio.conf.in).
tmp=$(mktemp -d /tmp/crio.XXXXXX)
cgroup_parent=/$(basename "$tmp")
# shellcheck source=tests/lib/e2e.sh
source "$repo/tests/lib/e2e.sh"
# shellcheck source=tests/crio/lib.sh
source "$here/lib.sh"
# shellcheck source=tests/crio/traces.sh
source "$here/traces.sh"
trap cleanup EXIT

ctr_field() { cri inspect "$1" 2>/dev/null | jq -r "$2"; }
ctr_in_state() { [[ $(ctr_field "$1" .status.state) == "$2" ]]; }
# Whole output first: with pipefail, grep -q closing the pipe early could fail crictl.
logs_contain() { [[ $(cri logs "$1") == *"$2"* ]]; }
# Processes in the PID namespace of process $1 whose command line is exactly $2 (NULs as spaces).
procs_in_ns_of() {
    local ns f pid
    ns=$(readlink "/proc/$1/ns/pid") || return 0
    for f in /proc/[0-9]*/cmdline; do
        pid=${f#/proc/}
        pid=${pid%/cmdline}
        [[ $(readlink "/proc/$pid/ns/pid" 2>/dev/null) == "$ns" ]] || continue
        [[ $(tr '\0' ' ' 2>/dev/null <"$f") == "$2 " ]] && echo "$pid"
    done
    return 0
}
no_procs_in_ns_of() { [[ -z $(procs_in_ns_of "$1" "$2") ]]; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# pod_json NAME, ctr_json NAME CMD_JSON [STDIN]: CRI configs; host network and a PID
# namespace per container (pod and container), so CRI-O drops the infra container. The pods'
# cgroups (and with monitor_cgroup "pod" the monitors') go under one parent that cleanup removes.
ns_opts='{"network": 2, "pid": 1}'
pod_json() {
    jq -n --arg name "$1" --arg uid "$(cat /proc/sys/kernel/random/uuid)" --arg logs "$tmp/state/pod-logs/$1" \
        --arg cg "$cgroup_parent" --argjson ns "$ns_opts" '{
        metadata: {name: $name, namespace: "crio-check", uid: $uid, attempt: 0}, log_directory: $logs,
        linux: {cgroup_parent: $cg, security_context: {namespace_options: $ns}}}' >"$tmp/$1.pod.json"
}
ctr_json() {
    jq -n --arg name "$1" --argjson cmd "$2" --argjson stdin "${3:-false}" --argjson ns "$ns_opts" '{
        metadata: {name: $name}, image: {image: "localhost/busybox:latest"}, command: $cmd,
        log_path: "\($name).log", stdin: $stdin, stdin_once: $stdin,
        linux: {security_context: {namespace_options: $ns}}}' >"$tmp/$1.ctr.json"
}

# run_handler H: the lifecycle under handler H's CRI-O. Returns early (after reporting)
# when a step the rest depends on fails; cleanup removes what is left.
run_handler() {
    local h=$1 mon pod ctr actr out rc t0 ms pid mpids mpids2 ids
    [[ $h == conmond ]] && mon=$CONMOND_BINARY || mon=$CONMON_BINARY
    render_config "$h" || { fail "$h" "config" "placeholders left in $tmp/crio-$h.conf"; return 1; }
    if start_crio "$h"; then
        pass "$h" "crio start (default_runtime $h, $(cri version | sed -n 's/^RuntimeVersion: *//p'))"
    else
        fail "$h" "crio start" "no answer on $tmp/state/crio.sock within ${CRIO_WAIT}s"
        return 1
    fi

    pod_json "pod-$h"
    if pod=$(cri runp --runtime "$h" "$tmp/pod-$h.pod.json") && [[ $pod =~ ^[0-9a-f]{64}$ ]]; then
        pass "$h" "runp"
    else
        fail "$h" "runp" "$pod $(cri_err)"
        return 1
    fi
    if [[ $h == conmond ]]; then
        mpids=$(monitors "$mon" "$pod")
        [[ $(wc -w <<<"$mpids") == 1 ]] && pass "$h" "runp started one conmond for the pod (pid $mpids)" \
            || fail "$h" "one conmond per pod at runp" "pids: ${mpids:-none}"
    else
        # C conmon runs per container; with the infra container dropped a pod has none.
        mpids=$(monitors "$mon" "$tmp/")
        [[ -z $mpids ]] && pass "$h" "runp started no conmon (infra container dropped)" \
            || fail "$h" "no conmon at runp" "pids: $mpids"
    fi

    # shellcheck disable=SC2016 # expanded by the container's shell
    ctr_json loop '["sh", "-c", "trap \"exit 7\" TERM; i=0; while :; do echo line $i; i=$((i + 1)); sleep 0.2; done"]'
    if ctr=$(cri create "$pod" "$tmp/loop.ctr.json" "$tmp/pod-$h.pod.json") && [[ $ctr =~ ^[0-9a-f]{64}$ ]]; then
        pass "$h" "create"
    else
        fail "$h" "create" "$ctr $(cri_err)"
        return 1
    fi
    if [[ $h == conmond ]]; then
        # CRI-O passes --log-driver systemd with stdio on /dev/null; no journald here.
        own_log=$(find "$tmp" -path "*$pod*" -name conmond.log -print -quit)
        if [[ -n $own_log ]] && head -n1 "$own_log" | grep -q 'journald is not reachable' \
            && grep -q 'container created' "$own_log"; then
            pass "$h" "conmond's own log in its runtime dir without journald (${own_log#"$tmp"/})"
        else
            fail "$h" "conmond's own log without journald" "file: ${own_log:-none}; $(head -c 300 "${own_log:-/dev/null}")"
        fi
    fi
    if cri start "$ctr" >/dev/null && wait_for 10 ctr_in_state "$ctr" CONTAINER_RUNNING; then
        pass "$h" "start"
    else
        fail "$h" "start" "$(cri_err); state $(ctr_field "$ctr" .status.state)"
        return 1
    fi
    if [[ $h == oci ]]; then
        mpids=$(monitors "$mon" "$ctr")
        [[ $(wc -w <<<"$mpids") == 1 ]] && pass "$h" "one conmon for the container (pid $mpids)" \
            || fail "$h" "one conmon per container" "pids: ${mpids:-none}"
    fi
    # monitor_cgroup "pod" with cgroupfs: CRI-O moves the monitor to <parent>/crio-conmon-<id>.
    out=$cgroup_parent/crio-conmon-$([[ $h == conmond ]] && echo "$pod" || echo "$ctr")
    [[ -n $mpids ]] && grep -qx "[0-9]*:memory:$out" "/proc/$mpids/cgroup" 2>/dev/null \
        && pass "$h" "monitor in the pod's cgroup (memory $out)" \
        || fail "$h" "monitor cgroup" "want memory:$out, have: $(grep :memory: "/proc/$mpids/cgroup" 2>&1)"

    out=$(cri exec -s "$ctr" echo hello) && [[ $out == hello ]] && pass "$h" "exec -s echo" \
        || fail "$h" "exec -s echo" "output '$out' $(cri_err)"
    # crictl 1.34 turns a non-zero exit into an error "command '…' exited with N: <stderr>".
    rc=0
    cri exec -s "$ctr" sh -c 'echo x >&2; exit 3' >/dev/null || rc=$?
    [[ $rc != 0 ]] && grep -qF "exited with 3: x" "$tmp/cri.err" && pass "$h" "exec -s exit code 3 and stderr" \
        || fail "$h" "exec -s exit code" "crictl rc $rc: $(cri_err)"

    pid=$(ctr_field "$ctr" .info.pid)
    t0=$(now_ms) rc=0
    out=$(cri exec -s --timeout 1 "$ctr" sleep 17) || rc=$?
    ms=$(($(now_ms) - t0))
    if [[ $rc != 0 ]] && ((ms < 5000)) && wait_for 5 no_procs_in_ns_of "$pid" "sleep 17"; then
        pass "$h" "exec -s --timeout 1 of sleep 17 failed after ${ms}ms and the process is gone"
    else
        fail "$h" "exec -s --timeout 1" "rc $rc after ${ms}ms ('$out' $(cri_err)), left: $(procs_in_ns_of "$pid" "sleep 17")"
    fi

    out=$(echo hi | timeout 30 "$CRICTL" --config "$tmp/crictl.yaml" exec -i "$ctr" cat 2>"$tmp/cri.err") &&
        [[ $out == hi ]] && pass "$h" "exec -i (streaming, stdin)" \
        || fail "$h" "exec -i (streaming, stdin)" "output '$out' $(cri_err)"

    wait_for 10 logs_contain "$ctr" "line 3" && pass "$h" "logs" \
        || fail "$h" "logs" "no 'line 3' in: $(cri logs --tail 5 "$ctr" | tr '\n' '|') $(cri_err)"

    out=$(tr '\0' '\n' <"/proc/$pid/environ"; cri exec -s "$ctr" env)
    ! grep -qi '^traceparent=' <<<"$out" && pass "$h" "no trace context leaked into the container's environment" \
        || fail "$h" "container environment" "$(grep -i '^traceparent=' <<<"$out" | head -n2 | tr '\n' ' ')"

    # attach: the container exits 5 only if the line it read is the one sent through attach.
    # shellcheck disable=SC2016 # expanded by the container's shell
    ctr_json reader '["sh", "-c", "read l; [ \"$l\" = hello ] && { echo got $l; exit 5; }; echo bad $l; exit 9"]' true
    if actr=$(cri create "$pod" "$tmp/reader.ctr.json" "$tmp/pod-$h.pod.json") && cri start "$actr" >/dev/null &&
        wait_for 10 ctr_in_state "$actr" CONTAINER_RUNNING; then
        # crictl returns at stdin EOF, maybe before the container's output: the result is the exit code.
        out=$(echo hello | timeout 30 "$CRICTL" --config "$tmp/crictl.yaml" attach -i "$actr" 2>"$tmp/cri.err") || true
        if wait_for 10 ctr_in_state "$actr" CONTAINER_EXITED && [[ $(ctr_field "$actr" .status.exitCode) == 5 ]]; then
            pass "$h" "attach -i (stdin_once): container read the line and exited 5"
        else
            fail "$h" "attach" "state $(ctr_field "$actr" .status.state), exit $(ctr_field "$actr" .status.exitCode), crictl: $out $(cri_err)"
        fi
    else
        fail "$h" "attach" "create/start of the stdin container: $actr $(cri_err)"
        actr=
    fi

    # conmond: one for the pod and its two containers; C conmon: one per running container.
    local owner=$pod one="conmond for the pod with two containers"
    [[ $h == conmond ]] || owner=$ctr one="conmon left: the running container's"
    mpids=$(monitors "$mon" "$owner")
    ids=$(monitors "$mon" "$tmp/")
    [[ $(wc -w <<<"$mpids") == 1 && $ids == "$mpids" ]] \
        && pass "$h" "exactly one $one (pid $mpids)" \
        || fail "$h" "exactly one $one" "for $owner: ${mpids:-none}; all under $tmp: ${ids:-none}"

    # CRI-O restart under a running pod: the monitor survives and is reused.
    stop_crio
    if start_crio "$h"; then
        mpids2=$(monitors "$mon" "$([[ $h == conmond ]] && echo "$pod" || echo "$ctr")")
        out=$(cri exec -s "$ctr" echo again) || true
        [[ -n $mpids && $mpids2 == "$mpids" && $out == again ]] \
            && pass "$h" "crio restart: same monitor (pid $mpids) reused, exec -s works" \
            || fail "$h" "crio restart" "monitor before '$mpids', after '$mpids2'; exec -s: '$out' $(cri_err)"
    else
        fail "$h" "crio restart" "CRI-O did not come back within ${CRIO_WAIT}s"
        return 1
    fi

    if cri stop -t 10 "$ctr" >/dev/null && wait_for 15 ctr_in_state "$ctr" CONTAINER_EXITED &&
        [[ $(ctr_field "$ctr" .status.exitCode) == 7 ]]; then
        pass "$h" "stop: exit code 7 (the TERM trap) in inspect"
    else
        fail "$h" "stop" "$(cri_err); state $(ctr_field "$ctr" .status.state), exit $(ctr_field "$ctr" .status.exitCode)"
    fi
    if [[ $h == oci ]]; then
        wait_for 10 no_monitors "$mon" "$ctr" && pass "$h" "the container's conmon exited with it" \
            || fail "$h" "conmon exit" "still running: $(monitors "$mon" "$ctr")"
    fi
    if cri rm "$ctr" ${actr:+"$actr"} >/dev/null && [[ -z $(cri ps -a -q --pod "$pod") ]]; then
        pass "$h" "rm"
    else
        fail "$h" "rm" "$(cri_err); left: $(cri ps -a -q --pod "$pod" | tr '\n' ' ')"
    fi
    cri stopp "$pod" >/dev/null && pass "$h" "stopp" || fail "$h" "stopp" "$(cri_err)"
    if cri rmp "$pod" >/dev/null && [[ -z $(cri pods -q) ]]; then
        pass "$h" "rmp"
    else
        fail "$h" "rmp" "$(cri_err); pods left: $(cri pods -q | tr '\n' ' ')"
    fi
    if [[ $h == conmond ]]; then
        wait_for 10 no_monitors "$mon" "$pod" && pass "$h" "conmond gone after rmp" \
            || fail "$h" "conmond gone after rmp" "still running: $(monitors "$mon" "$pod")"
        check_traces "$h"
    else
        skip "$h" "tracing" "C conmon exports no spans; checked under conmond"
    fi
}

finish() {
    echo "crio: $passed passed, $failed failed"
    exit $((failed > 0))
}

if start_jaeger; then
    pass all "jaeger up (${jaeger_pid:+pid $jaeger_pid, }OTLP $OTLP_HOST:$OTLP_PORT, query $QUERY)"
else
    fail all "jaeger" "$jaeger_error"
    finish
fi
prepare_state
if bash "$here/busybox-image.sh" "$tmp/layout" "$tmp/state/storage" "$tmp/state/run/storage" 2>"$tmp/image.err"; then
    pass all "busybox and pause images imported into CRI-O's vfs storage"
else
    fail all "image import" "$(tail -n 3 "$tmp/image.err" | tr '\n' ' ')"
    finish
fi
for h in $CRIO_HANDLERS; do
    before=$failed
    run_handler "$h" || true
    ((failed == before)) || show_logs
    if [[ -n $crio_pid ]] && crio_up; then cri rmp -f -a >/dev/null || true; fi
    stop_crio
done
finish
