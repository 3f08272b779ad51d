#!/usr/bin/env bash
# Build a VM's root disk: an unpacked OCI root filesystem plus Imp's guest files under /.imp,
# written into an ext4 image with mkfs.ext4 -d (no loop mount, no privileges beyond reading
# the tree and keeping its owners).
#
# Usage: hack/make-rootdisk.sh ROOTFS_DIR OUT.img SIZE [WORKLOAD_CONFIG]
#   ROOTFS_DIR       unpacked image root (e.g. from `umoci unpack`, run as root so that file
#                    owners are real); it is read, never changed
#   OUT.img          ext4 image to create; an existing file is replaced
#   SIZE             filesystem size as mkfs.ext4 takes it (512M, 2G) or "auto" (contents
#                    plus half again plus 64 MiB)
#   WORKLOAD_CONFIG  workload file installed as /.imp/workload.sh (format: docs/guest.md);
#                    without it an existing ROOTFS_DIR/.imp/workload.sh is kept
#
# Environment: BUSYBOX (default busybox on PATH), TINI (default /usr/bin/tini-static).
# Output: the last stdout line is OUT.img. Progress goes to stderr.
set -euo pipefail

log() { echo "make-rootdisk: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -ge 3 && $# -le 4 ]] || die "usage: $0 ROOTFS_DIR OUT.img SIZE [WORKLOAD_CONFIG]"
rootfs=$1 out=$2 size=$3 workload=${4:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guest="$here/../guest"
busybox=$(command -v "${BUSYBOX:-busybox}") || die "busybox not found"
tini=${TINI:-/usr/bin/tini-static}

[[ -d "$rootfs" ]] || die "$rootfs is not a directory"
[[ -x "$tini" ]] || die "$tini not found (apt-get install tini)"
[[ -z "$workload" || -f "$workload" ]] || die "$workload not found"
if [[ -z "$workload" && ! -f "$rootfs/.imp/workload.sh" ]]; then
    die "no workload config given and $rootfs/.imp/workload.sh does not exist"
fi

start=$(date +%s%N)
out_dir=$(cd "$(dirname "$out")" && pwd)
stage=$(mktemp -d "$out_dir/.rootdisk.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# Hard links make the copy nearly free. They are safe because below nothing existing is
# written in place: paths are removed before they are created anew.
if ! cp -al "$rootfs/." "$stage/" 2>/dev/null; then
    log "hard links impossible (another filesystem?); copying"
    rm -rf "$stage" && mkdir "$stage"
    cp -a "$rootfs/." "$stage/"
fi

kept_workload=
if [[ -z "$workload" ]]; then
    kept_workload="$stage/.workload.keep"
    cp "$rootfs/.imp/workload.sh" "$kept_workload"
fi
rm -rf "$stage/.imp"
mkdir -p "$stage/.imp/bin"
cp "$busybox" "$stage/.imp/bin/busybox"
# Own applet links, so the init never depends on what the image has in /bin.
for applet in $("$busybox" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$stage/.imp/bin/$applet"
done
cp "$tini" "$stage/.imp/bin/tini"
install -m 0755 "$guest/init" "$stage/.imp/init"
if [[ -n "$kept_workload" ]]; then
    mv "$kept_workload" "$stage/.imp/workload.sh"
else
    install -m 0644 "$workload" "$stage/.imp/workload.sh"
fi

# The init mounts on these; images built FROM scratch often lack them.
for dir in proc sys dev run tmp etc; do
    if [[ ! -e "$stage/$dir" && ! -L "$stage/$dir" ]]; then
        mkdir "$stage/$dir"
        [[ "$dir" != tmp ]] || chmod 1777 "$stage/tmp"
    fi
done
# mkfs.ext4 -d gives the image's root directory the mode of the staging directory (0700).
chmod --reference="$rootfs" "$stage"
chown --reference="$rootfs" "$stage"

if [[ "$size" == auto ]]; then
    used_kib=$(du -sk "$stage" | cut -f1)
    size="$((used_kib * 3 / 2 / 1024 + 64))M"
fi

rm -f "$out"
truncate -s "$size" "$out"
# -T default: 4 KiB blocks even for small disks; -m 0: no blocks reserved for root, the VM
# has one user of its disk.
mkfs.ext4 -q -F -T default -m 0 -L imp-root -d "$stage" "$out" >&2 ||
    die "mkfs.ext4 failed (is $size large enough?)"
log "built $out ($size) in $((($(date +%s%N) - start) / 1000000)) ms"
echo "$out"
