#!/usr/bin/env bash
# Runs the Go interop tests: conmon-rs's own Go client (the one CRI-O links) against
# conmond. Usage (as root): bash tests/interop/run.sh
# Env: CONMOND_BINARY (default ../../target/debug/conmond from here), RUNTIME_BINARY
# (default /usr/sbin/runc), BUSYBOX_BINARY (default /usr/bin/busybox), PROTO_ENCODER (default:
# conmon-proto's encode_requests example, built here; upstream_schema_test.go decodes its output
# with conmon-rs's own schema, which needs the `capnp` tool).
# The last line of output is "interop: N passed, M failed"; exits non-zero on failure.
set -euo pipefail

cd "$(dirname "$0")"

[[ $(id -u) == 0 ]] || { echo "run.sh: must run as root (runc containers, cgroups)" >&2; exit 1; }
CONMOND_BINARY=${CONMOND_BINARY:-$(pwd)/../../target/debug/conmond}
[[ -x $CONMOND_BINARY ]] || {
    echo "run.sh: no conmond binary at $CONMOND_BINARY (cargo build -p conmon first, or set CONMOND_BINARY)" >&2
    exit 1
}
export CONMOND_BINARY
if [[ -z ${PROTO_ENCODER:-} ]]; then
    (cd ../.. && cargo build -q -p conmon-proto --example encode_requests)
    PROTO_ENCODER=$(pwd)/../../target/debug/examples/encode_requests
fi
export PROTO_ENCODER
export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "run.sh: go toolchain not found (install Go >= 1.26)" >&2; exit 1; }

out=$(mktemp /tmp/conmond-interop-out.XXXXXX)
trap 'rm -f "$out"' EXIT

status=0
go test -count=1 -v ./... 2>&1 | tee "$out" || status=$?

# Count every test and subtest result line (subtests are indented).
passed=$(grep -cE '^[[:space:]]*--- PASS' "$out" || true)
failed=$(grep -cE '^[[:space:]]*--- FAIL' "$out" || true)
skipped=$(grep -cE '^[[:space:]]*--- SKIP' "$out" || true)
if [[ $status != 0 && $failed == 0 ]]; then
    # e.g. a build error or a panic: no "--- FAIL" line, but the run failed.
    echo "run.sh: go test exited $status without a --- FAIL line" >&2
    failed=1
fi
if [[ $status == 0 && $passed == 0 ]]; then
    echo "run.sh: go test ran no test" >&2
    status=1
fi
summary="interop: $passed passed, $failed failed"
[[ $skipped == 0 ]] || summary+=", $skipped skipped"
echo "$summary"
exit "$status"
