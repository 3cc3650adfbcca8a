#!/usr/bin/env python3
"""Drive conmond through a given conmon.capnp schema and print its answers as JSON.

Run once with our schema and once with conmon-rs's published one: identical
output shows that a client built from either schema sees the same protocol.
Volatile values (pids, version strings) are reduced to booleans or kept only
where both runs see the same daemon, so the two outputs can be diffed.
"""
import argparse
import asyncio
import json
import subprocess

import capnp  # pycapnp >= 2


async def main(args):
    # The schema file is loaded as-is; neither ours nor upstream's imports anything.
    schema = capnp.load(args.schema)
    stream = await capnp.AsyncIoStream.create_unix_connection(args.socket)
    mon = capnp.TwoPartyClient(stream).bootstrap().cast_as(schema.Conmon)
    out = {}

    # (a) version
    v = (await mon.version(request={"verbose": False})).response
    out["version"] = {
        "pid_positive": v.processId > 0,
        "version": v.version,
        "commit_nonempty": bool(v.commit),
        "cargo_tree_empty": v.cargoTree == "",  # not verbose
    }

    # (b) createContainer
    req = mon.createContainer_request()
    r = req.request
    r.id = args.id
    r.bundlePath = args.bundle
    r.exitPaths = [args.exit_file]
    r.logDrivers = []
    r.cgroupManager = "cgroupfs"
    c = (await req.send()).response
    out["createContainer"] = {"pid_positive": c.containerPid > 0}

    # (c) the container was only created; start it so exec has a running process
    subprocess.run(["runc", "--root", args.runc_root, "start", args.id], check=True)

    async def exec_sync(cid, command):
        req = mon.execSyncContainer_request()
        r = req.request
        r.id = cid
        r.timeoutSec = 10
        r.command = command
        r.cgroupManager = "cgroupfs"
        return (await req.send()).response

    # (d) exit code, separate stdout/stderr (Data fields -> bytes)
    e = await exec_sync(args.id, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    out["execSync"] = {
        "exitCode": e.exitCode,
        "stdout": bytes(e.stdout).decode(),
        "stderr": bytes(e.stderr).decode(),
        "timedOut": e.timedOut,
    }

    # (e) a failing command inside the container
    e = await exec_sync(args.id, ["busybox", "invalid"])
    out["execSyncInvalid"] = {
        "exitCode": e.exitCode,
        "stderr": bytes(e.stderr).decode(),
    }

    # (f) unknown container: the server answers with an RPC exception
    try:
        await exec_sync("ghost", ["true"])
        out["execSyncGhost"] = {"error": None}
    except capnp.KjException as exc:
        out["execSyncGhost"] = {"type": str(exc.type), "description": exc.description}

    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    for name in ("schema", "socket", "bundle", "exit-file", "runc-root", "id"):
        p.add_argument("--" + name, required=True)
    # pycapnp 2: every RPC must run inside the KJ event loop that capnp.run provides
    asyncio.run(capnp.run(main(p.parse_args())))
