#!/usr/bin/env bash
# Fetch the guest kernel Imp boots: Debian's cloud kernel, unpacked into a cache directory.
#
# Usage: hack/guest-kernel.sh
#
# Environment:
#   IMP_CACHE_DIR        cache root (default: $HOME/.cache/imp)
#   IMP_KERNEL_PACKAGE   exact package, e.g. linux-image-6.1.0-57-cloud-amd64 (default: the
#                        one the linux-image-cloud-amd64 metapackage depends on)
#
# Output: the last stdout line is the kernel directory
#   $IMP_CACHE_DIR/kernel/<release>/  with  vmlinuz, config, lib/modules/<release>/
# where <release> is what `uname -r` prints in the guest. Progress goes to stderr.
# A finished directory is never rebuilt; delete it to force a new download.
set -euo pipefail

log() { echo "guest-kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

cache_root="${IMP_CACHE_DIR:-$HOME/.cache/imp}/kernel"

# The metapackage tracks the newest ABI; pin IMP_KERNEL_PACKAGE for reproducible builds.
resolve_package() {
    if [[ -n "${IMP_KERNEL_PACKAGE:-}" ]]; then
        echo "$IMP_KERNEL_PACKAGE"
        return
    fi
    local dep
    dep=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-cloud-amd64$/ { print $2; exit }')
    [[ -n "$dep" ]] || die "cannot resolve linux-image-cloud-amd64 (run 'apt-get update' first)"
    echo "$dep"
}

package=$(resolve_package)
release=${package#linux-image-}
[[ "$release" != "$package" ]] || die "unexpected package name: $package"
dest="$cache_root/$release"

# The marker is written last, so a directory without it is a leftover of an interrupted run.
if [[ -f "$dest/.complete" ]]; then
    log "cached: $dest"
    echo "$dest"
    exit 0
fi

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/.fetch-$release.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "downloading $package"
# The cache usually sits under a private home directory that apt's _apt user cannot enter.
(cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$package" >&2)
deb=$(find "$work" -maxdepth 1 -name "${package}_*.deb" -print -quit)
[[ -n "$deb" ]] || die "apt-get download produced no .deb for $package"

log "unpacking $(basename "$deb")"
dpkg -x "$deb" "$work/pkg"

out="$work/out"
mkdir -p "$out/lib/modules"
cp "$work/pkg/boot/vmlinuz-$release" "$out/vmlinuz"
cp "$work/pkg/boot/config-$release" "$out/config"
# Debian moved /lib into /usr/lib in later releases; accept either layout.
modules=""
for candidate in "$work/pkg/lib/modules/$release" "$work/pkg/usr/lib/modules/$release"; do
    if [[ -d "$candidate" ]]; then modules="$candidate"; fi
done
[[ -n "$modules" ]] || die "no modules directory for $release in $deb"
mv "$modules" "$out/lib/modules/$release"
# The package ships no modules.dep (its postinst runs depmod); build-initramfs needs one.
# busybox-static is already a dependency of the guest, kmod may not be installed.
busybox depmod -b "$out" "$release"
basename "$deb" >"$out/package"
touch "$out/.complete"

# Another run may have finished first; its result is as good as ours.
[[ -f "$dest/.complete" ]] || rm -rf "$dest"
if ! mv -T "$out" "$dest" 2>/dev/null; then
    [[ -f "$dest/.complete" ]] || die "cannot move kernel into $dest"
fi
log "ready: $dest"
echo "$dest"
