#!/usr/bin/env bash
# Writes an OCI image layout holding two images built from Debian's static busybox, and
# copies both into a containers-storage store, so CRI-O needs no registry:
#   localhost/busybox:latest  (Cmd sh) for the test containers
#   localhost/pause:latest    (Cmd sleep infinity) because CRI-O creates a pod's storage from
#                             its pause image even when the infra container is dropped
#
# Usage: busybox-image.sh LAYOUT_DIR STORAGE_ROOT STORAGE_RUNROOT
# The store is vfs (what the check's crio.conf uses). Needs skopeo, jq, sha256sum, tar.
set -euo pipefail

[[ $# == 3 ]] || { echo "usage: $0 LAYOUT_DIR STORAGE_ROOT STORAGE_RUNROOT" >&2; exit 2; }
layout=$1 root=$2 runroot=$3
busybox=${BUSYBOX:-/usr/bin/busybox}
[[ -x $busybox ]] || { echo "busybox-image.sh: no static busybox at $busybox (apt-get install busybox-static)" >&2; exit 1; }

rm -rf "$layout"
mkdir -p "$layout/blobs/sha256"
fs=$(mktemp -d "${TMPDIR:-/tmp}/busybox-rootfs.XXXXXX")
trap 'rm -rf "$fs"' EXIT

mkdir -p "$fs"/{bin,dev,etc,proc,sys,tmp,root,var/tmp}
chmod 1777 "$fs/tmp" "$fs/var/tmp"
install -m 0755 "$busybox" "$fs/bin/busybox"
# Symlinks, not hard links: hard-linked applets lost the exec bit on the way into storage.
for applet in $("$busybox" --list); do
    [[ -e $fs/bin/$applet ]] || ln -s busybox "$fs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$fs/etc/passwd"
echo 'root:x:0:' >"$fs/etc/group"

# Stores $1 (a file) as a blob; prints "<digest> <size>".
put_blob() {
    local sum size
    sum=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$layout/blobs/sha256/$sum"
    echo "sha256:$sum $size"
}

# One uncompressed layer, reproducible: fixed order, times and owners.
tar -C "$fs" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -cf "$layout/layer.tar" .
read -r layer_digest layer_size < <(put_blob "$layout/layer.tar")

manifests=()
# Writes the config and manifest of image $1 (its ref name in index.json) with Cmd $2 (JSON).
add_image() {
    local ref=$1 cmd=$2 config_digest config_size manifest_digest manifest_size
    jq -nc --arg diff "$layer_digest" --argjson cmd "$cmd" '{
        architecture: "amd64", os: "linux",
        created: "1970-01-01T00:00:00Z",
        config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: $cmd},
        rootfs: {type: "layers", diff_ids: [$diff]},
        history: [{created: "1970-01-01T00:00:00Z", created_by: "conmond tests/crio/busybox-image.sh"}]
    }' >"$layout/config.json"
    read -r config_digest config_size < <(put_blob "$layout/config.json")
    jq -nc --arg cd "$config_digest" --argjson cs "$config_size" \
        --arg ld "$layer_digest" --argjson ls "$layer_size" '{
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
        layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $ld, size: $ls}]
    }' >"$layout/manifest.json"
    read -r manifest_digest manifest_size < <(put_blob "$layout/manifest.json")
    manifests+=("$(jq -nc --arg d "$manifest_digest" --argjson s "$manifest_size" --arg ref "$ref" '{
        mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s,
        annotations: {"org.opencontainers.image.ref.name": $ref}
    }')")
}
add_image busybox '["sh"]'
add_image pause '["sleep", "infinity"]'

echo '{"imageLayoutVersion": "1.0.0"}' >"$layout/oci-layout"
printf '%s\n' "${manifests[@]}" | jq -s '{schemaVersion: 2, manifests: .}' >"$layout/index.json"

for name in busybox pause; do
    skopeo copy --quiet "oci:$layout:$name" "containers-storage:[vfs@$root+$runroot]localhost/$name:latest" >&2
done
