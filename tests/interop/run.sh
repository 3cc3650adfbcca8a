#!/usr/bin/env bash
# Runs the Go interop tests: conmon-rs's own Go client (the one CRI-O links) against
# conmond, twice: with client v1.0.1 (go.mod; CRI-O >= 1.35) and with client v0.6.6
# (go.v0.6.mod, tag conmonrs_v06; CRI-O <= 1.34, the pre-1.0 request layout).
# Usage (as root): bash tests/interop/run.sh
# Env: CONMOND_BINARY (default ../../target/debug/conmond from here), RUNTIME_BINARY
# (default /usr/sbin/runc), BUSYBOX_BINARY (default /usr/bin/busybox), PROTO_ENCODER (default:
# conmon-proto's encode_requests example, built here; upstream_schema_test.go decodes its output
# with conmon-rs's own schema, which needs the `capnp` tool).
# Prints "interop <version>: N passed, M failed[, K skipped]" after each run, then as the last
# line the sums over both, "interop: N passed, M failed[, K skipped]"; exits non-zero if
# either run failed.
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

status=0 passed=0 failed=0 skipped=0

# run_generation VERSION [go test flags]: one go test run, counted into the totals.
run_generation() {
    local version=$1 rc=0 p f s
    shift
    echo "== interop: conmon-rs Go client $version"
    go test -count=1 -v "$@" ./... 2>&1 | tee "$out" || rc=$?
    # Count every test and subtest result line (subtests are indented).
    p=$(grep -cE '^[[:space:]]*--- PASS' "$out" || true)
    f=$(grep -cE '^[[:space:]]*--- FAIL' "$out" || true)
    s=$(grep -cE '^[[:space:]]*--- SKIP' "$out" || true)
    if [[ $rc != 0 && $f == 0 ]]; then
        # e.g. a build error or a panic: no "--- FAIL" line, but the run failed.
        echo "run.sh: go test ($version) exited $rc without a --- FAIL line" >&2
        f=1
    fi
    if [[ $rc == 0 && $p == 0 ]]; then
        echo "run.sh: go test ($version) ran no test" >&2
        rc=1
    fi
    [[ $rc == 0 ]] || status=1
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    summary "interop $version" "$p" "$f" "$s"
}

summary() {
    local line="$1: $2 passed, $3 failed"
    [[ $4 == 0 ]] || line+=", $4 skipped"
    echo "$line"
}

run_generation v1.0.1
run_generation v0.6.6 -modfile=go.v0.6.mod -tags conmonrs_v06

summary interop "$passed" "$failed" "$skipped"
exit "$status"
