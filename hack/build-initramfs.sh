#!/usr/bin/env bash
# Build Imp's initramfs: static busybox, guest/initramfs-init as /init, and the kernel modules
# listed in guest/initramfs-modules with their dependencies.
#
# Usage: hack/build-initramfs.sh [KERNEL_DIR]
#   KERNEL_DIR  a directory made by hack/guest-kernel.sh (default: run it)
#
# Environment: IMP_CACHE_DIR (default $HOME/.cache/imp), BUSYBOX (default: busybox on PATH).
#
# Output: the last stdout line is the path of a gzip-compressed newc cpio,
#   $IMP_CACHE_DIR/initramfs/<kernel release>-<inputs hash>.cpio.gz
# The hash covers this script, the guest files it packs and the busybox binary, so a cached
# file is reused until one of them changes. Progress goes to stderr.
set -euo pipefail

log() { echo "build-initramfs: $*" >&2; }
die() { log "error: $*"; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guest="$here/../guest"
kernel_dir=${1:-$("$here/guest-kernel.sh" | tail -n 1)}
busybox=$(command -v "${BUSYBOX:-busybox}") ||
    die "busybox not found (apt-get install busybox-static)"
# A dynamically linked busybox would need a libc in the initramfs; its ELF names the loader.
if grep -aq '/ld-linux' "$busybox"; then
    die "$busybox is dynamically linked; install busybox-static"
fi

modules_root="$kernel_dir/lib/modules"
release=$(ls "$modules_root")
[[ -n "$release" && $(wc -w <<<"$release") -eq 1 ]] || die "expected one release in $modules_root"
moddir="$modules_root/$release"
[[ -f "$moddir/modules.dep" ]] || die "$moddir/modules.dep missing"

hash=$(cat "${BASH_SOURCE[0]}" "$guest/initramfs-init" "$guest/initramfs-modules" "$busybox" \
    | sha256sum | cut -c1-12)
out_dir="${IMP_CACHE_DIR:-$HOME/.cache/imp}/initramfs"
out="$out_dir/$release-$hash.cpio.gz"
if [[ -f "$out" ]]; then
    log "cached: $out"
    echo "$out"
    exit 0
fi

# Module names use '_' where file names may use '-'; index modules.dep by the normal form.
declare -A path_of deps_of
while IFS= read -r line; do
    path=${line%%:*}
    name=${path##*/}
    name=${name%%.ko*}
    path_of[${name//-/_}]=$path
    deps_of[$path]=${line#*:}
done <"$moddir/modules.dep"

declare -A builtin
while IFS= read -r path; do
    name=${path##*/}
    name=${name%%.ko*}
    builtin[${name//-/_}]=1
done <"$moddir/modules.builtin"

# Depth-first, so every module comes after the modules it needs.
load_order=()
declare -A placed
place() {
    local path=$1 dep
    [[ -z "${placed[$path]:-}" ]] || return 0
    placed[$path]=1
    for dep in ${deps_of[$path]:-}; do place "$dep"; done
    load_order+=("$path")
}
while read -r name _; do
    [[ -n "$name" && "$name" != \#* ]] || continue
    name=${name//-/_}
    if [[ -n "${builtin[$name]:-}" ]]; then
        log "$name is built into the kernel"
        continue
    fi
    [[ -n "${path_of[$name]:-}" ]] || die "module $name not found in $moddir"
    place "${path_of[$name]}"
done <"$guest/initramfs-modules"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$stage/bin/$applet"
done
install -m 0755 "$guest/initramfs-init" "$stage/init"
# The init reads this list even when every module turned out to be built in.
: >"$stage/lib/modules/load-order"

for path in "${load_order[@]}"; do
    target="$stage/lib/modules/${path%.xz}"
    mkdir -p "$(dirname "$target")"
    # busybox insmod reads plain .ko files; decompress here rather than in the guest.
    case $path in
    *.ko) cp "$moddir/$path" "$target" ;;
    *.ko.xz) xz -dc "$moddir/$path" >"$target" ;;
    *) die "unsupported module compression: $path" ;;
    esac
    echo "${path%.xz}" >>"$stage/lib/modules/load-order"
done
log "modules: $(tr '\n' ' ' <"$stage/lib/modules/load-order")"

mkdir -p "$out_dir"
# Fixed timestamps and sorted entries make the archive depend on its inputs only.
find "$stage" -exec touch -h -d @0 {} +
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort \
    | cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -n -9 >"$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
log "built: $out ($(du -h "$out" | cut -f1))"
echo "$out"
