#!/usr/bin/env bash
# Runs conmon-rs's own client specs (Go module github.com/containers/conmon-rs v1.0.1, package
# pkg/client, ginkgo) against conmond. The module is copied from the Go module cache with one
# line added: its server config then asks for the cgroupfs manager, as this host has no
# systemd. The whole run happens in a private mount namespace with a journald of its own (a
# tmpfs over /run), so the journald specs have one and the host's /run is untouched.
#
# Specs that cannot run on this machine are skipped by name, each for a reason outside conmond:
# - "should catch out of memory (oom) events": runc 1.1 cannot apply the spec's 1 MiB memory
#   limit here (runc's own init uses ~2.2 MiB: "unable to set memory limit to 1048576"), so
#   the container is never created; tests/tests/it/oom.rs covers OOM handling with 16 MiB.
# - "Tracing": starts Jaeger in a container with podman (conmon-rs's contrib/tracing/start),
#   which this machine has not; tests/interop/jaeger_e2e.sh covers conmond's traces.
#
# Usage (as root): bash tests/interop/conmonrs_specs.sh [GINKGO_FOCUS_REGEXP]
# Env: CONMOND_BINARY (default ../../target/release/conmond from here: the specs check that the
# server's RSS stays under 5600 KiB, which a debug build exceeds), RUNTIME_BINARY (default
# /usr/sbin/runc), BUSYBOX_BINARY (default /usr/bin/busybox).
# Prints "conmon-rs specs: N passed, M failed, K skipped" last; exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")"

[[ $(id -u) == 0 ]] || { echo "conmonrs_specs.sh: must run as root" >&2; exit 1; }
CONMOND_BINARY=${CONMOND_BINARY:-$(pwd)/../../target/release/conmond}
[[ -x $CONMOND_BINARY ]] || { echo "conmonrs_specs.sh: no conmond at $CONMOND_BINARY" >&2; exit 1; }
RUNTIME_BINARY=${RUNTIME_BINARY:-/usr/sbin/runc}
BUSYBOX_BINARY=${BUSYBOX_BINARY:-/usr/bin/busybox}
focus=${1:-}
export PATH="$PATH:/usr/local/go/bin"

module=$(go mod download -json github.com/containers/conmon-rs@v1.0.1 | jq -r .Dir)
work=$(mktemp -d /tmp/conmonrs-specs.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$module" "$work/src"
chmod -R u+w "$work/src"
suite="$work/src/pkg/client/suite_test.go"
grep -q $'^\tcfg.LogDriver = client.LogDriverStdout$' "$suite" ||
    { echo "conmonrs_specs.sh: configGivenEnv changed upstream; adapt the patch" >&2; exit 1; }
sed -i $'s/^\tcfg.LogDriver = client.LogDriverStdout$/&\\n\tcfg.CgroupManager = client.CgroupManagerCgroupfs/' "$suite"
# The journald specs select the monitor's entries by its process name, `_COMM=conmonrs`:
# conmond runs as `conmonrs`, as an engine configured for conmon-rs's binary name would run it.
mkdir "$work/bin"
ln -s "$CONMOND_BINARY" "$work/bin/conmonrs"
# The suite downloads busybox unless it finds it here.
mkdir -p /tmp/conmon-test-images
cp "$BUSYBOX_BINARY" /tmp/conmon-test-images/busybox

skip='should catch out of memory \(oom\) events|Tracing'
out="$work/out.log"
# In the private namespace: journald on a tmpfs /run, then the specs.
inner='set -euo pipefail
mount -t tmpfs -o mode=0755 conmonrs-specs /run
mkdir -p /run/log/journal /run/systemd/journald.conf.d
printf "[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\nReadKMsg=no\nAudit=\nForwardToSyslog=no\nRateLimitIntervalSec=0\n" \
    > /run/systemd/journald.conf.d/specs.conf
/lib/systemd/systemd-journald >"$WORK/journald.log" 2>&1 &
for _ in $(seq 200); do [[ -S /run/systemd/journal/socket ]] && break; sleep 0.05; done
[[ -S /run/systemd/journal/socket ]] || { echo "journald did not start" >&2; exit 1; }
cd "$WORK/src"
args=(-v ./pkg/client -count=1 -timeout 20m -args -ginkgo.v -ginkgo.no-color "-ginkgo.skip=$SKIP")
[[ -z $FOCUS ]] || args+=("-ginkgo.focus=$FOCUS")
rc=0
go test "${args[@]}" || rc=$?
kill %1 2>/dev/null || true
exit $rc'
rc=0
WORK=$work SKIP=$skip FOCUS=$focus CONMON_BINARY=$work/bin/conmonrs RUNTIME_BINARY=$RUNTIME_BINARY \
    unshare --mount --propagation private bash -c "$inner" 2>&1 | tee "$out" || rc=$?
summary=$(grep -E '^(SUCCESS|FAIL)! -- ' "$out" | tail -1 || true)
[[ -n $summary ]] || { echo "conmonrs_specs.sh: the suite did not report (exit $rc)" >&2; exit 1; }
read -r passed failed skipped < <(sed -E 's/.* ([0-9]+) Passed \| ([0-9]+) Failed \| [0-9]+ Pending \| ([0-9]+) Skipped.*/\1 \2 \3/' <<<"$summary")
echo "conmon-rs specs: $passed passed, $failed failed, $skipped skipped"
[[ $rc == 0 && $failed == 0 && $passed -gt 0 ]]
