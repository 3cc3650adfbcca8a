#!/usr/bin/env bash
# Shows that a client built from conmon-rs's published schema gets the same answers from
# conmond as one built from ours. Usage (as root): run.sh /path/to/upstream/conmon.capnp
set -euo pipefail

UPSTREAM_SCHEMA=${1:?usage: $0 UPSTREAM_CONMON_CAPNP}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUR_SCHEMA=$REPO/proto/schema/conmon.capnp
CONMOND=${CONMOND:-$REPO/target/debug/conmond}
RUNC=${RUNC:-/usr/sbin/runc}
BUSYBOX=${BUSYBOX:-/usr/bin/busybox}
PY=${COMPAT_PYTHON:-/tmp/compat-venv/bin/python}

[[ $(id -u) == 0 ]] || { echo "run.sh: must run as root (runc containers)" >&2; exit 1; }
[[ -f $UPSTREAM_SCHEMA ]] || { echo "run.sh: no schema at $UPSTREAM_SCHEMA" >&2; exit 1; }
[[ -x $CONMOND ]] || { echo "run.sh: no conmond binary at $CONMOND (cargo build first)" >&2; exit 1; }
"$PY" -c 'import capnp' 2>/dev/null || {
    echo "run.sh: pycapnp missing for $PY; e.g. python3 -m venv /tmp/compat-venv &&" \
        "/tmp/compat-venv/bin/pip install 'pycapnp>=2,<3' (or set COMPAT_PYTHON)" >&2
    exit 1
}

TMP=$(mktemp -d /tmp/conmond-compat.XXXXXX)
CONMOND_PID=
cleanup() {
    # SIGTERM makes conmond kill and delete its containers; wait for it before removing dirs.
    if [[ -n $CONMOND_PID ]] && kill -TERM "$CONMOND_PID" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$CONMOND_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# Busybox OCI bundle whose process sleeps, so exec has something to join.
bundle=$TMP/bundles/a
mkdir -p "$bundle/rootfs/bin"
cp "$BUSYBOX" "$bundle/rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [[ $applet == busybox ]] || ln -s busybox "$bundle/rootfs/bin/$applet"
done
"$RUNC" spec --bundle "$bundle"
"$PY" - "$bundle/config.json" <<'PYEOF'
import json, sys
path = sys.argv[1]
cfg = json.load(open(path))
cfg["process"].update(terminal=False, args=["sleep", "1000"], env=["PATH=/bin"])
cfg["root"]["readonly"] = False
json.dump(cfg, open(path, "w"), indent=2)
PYEOF
cp -a "$bundle" "$TMP/bundles/b"  # each container needs its own bundle

# conmond forks; the parent returns once the pidfile is written.
"$CONMOND" --runtime "$RUNC" --runtime-dir "$TMP/run" --runtime-root "$TMP/runc" \
    --log-driver stdout >"$TMP/conmond.log" 2>&1
CONMOND_PID=$(cat "$TMP/run/pidfile")
for _ in $(seq 50); do [[ -S $TMP/run/conmon.sock ]] && break; sleep 0.1; done

client() { # ID SCHEMA
    "$PY" "$HERE/schema_client.py" --id "$1" --schema "$2" --socket "$TMP/run/conmon.sock" \
        --bundle "$TMP/bundles/$1" --exit-file "$TMP/$1.exit" --runc-root "$TMP/runc"
}
if ! client a "$OUR_SCHEMA" >"$TMP/ours.json" || ! client b "$UPSTREAM_SCHEMA" >"$TMP/upstream.json"; then
    echo "--- conmond log" >&2; cat "$TMP/conmond.log" >&2
    exit 1
fi

echo "=== our schema ($OUR_SCHEMA)"; cat "$TMP/ours.json"
echo "=== upstream schema ($UPSTREAM_SCHEMA)"; cat "$TMP/upstream.json"
if diff -u "$TMP/ours.json" "$TMP/upstream.json"; then
    echo "SAME ANSWERS"
else
    echo "ANSWERS DIFFER" >&2
    exit 1
fi
