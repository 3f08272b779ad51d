#!/usr/bin/env bash
# Checks the Firecracker (and optionally jailer) binaries Imp should use, and prints them.
#
# Usage: IMP_FIRECRACKER_BIN=/path/to/firecracker [IMP_JAILER_BIN=/path/to/jailer] \
#            hack/firecracker.sh
#
# Nothing is downloaded: Firecracker is not packaged for Debian and this script must not
# fetch binaries. Provide them yourself, e.g. from a Firecracker release archive
# (firecracker-vX.Y.Z-x86_64.tgz, whose release-vX.Y.Z-x86_64/ folder holds `firecracker-*`,
# `jailer-*` and SHA256SUMS), checked against SHA256SUMS and kept outside the repository,
# by convention in ~/.cache/imp/firecracker/<version>/. See docs/firecracker.md.
#
# Output: on stdout, lines `IMP_FIRECRACKER_BIN=...` (and `IMP_JAILER_BIN=...`) that a shell
# can eval; versions and warnings on stderr. Exit status: 0 when the binaries run, 2 when
# IMP_FIRECRACKER_BIN is not set (callers may skip), 1 when a given binary does not work.
set -euo pipefail

log() { echo "firecracker: $*" >&2; }
die() { log "error: $*"; exit 1; }

how_to_provide() {
    cat >&2 <<'HELP'
firecracker: IMP_FIRECRACKER_BIN is not set, so there is no Firecracker to use.
  Firecracker is not in Debian or npm, so no package manager can install it. Get a release
  archive from https://github.com/firecracker-microvm/firecracker/releases yourself (this
  script never downloads), check it against the release's SHA256SUMS, and keep the binaries
  outside the repository, e.g.
      ~/.cache/imp/firecracker/v1.14.1/firecracker
      ~/.cache/imp/firecracker/v1.7.0/{firecracker,jailer}
  then run:
      IMP_FIRECRACKER_BIN=~/.cache/imp/firecracker/v1.14.1/firecracker hack/firecracker.sh
HELP
}

# Prints the first line of `BIN --version`, e.g. "Firecracker v1.14.1".
version_of() {
    local bin=$1 out
    [[ -f "$bin" ]] || die "$bin does not exist"
    [[ -x "$bin" ]] || die "$bin is not executable (chmod +x it)"
    out=$("$bin" --version 2>&1) || die "$bin --version failed: $out"
    head -n 1 <<<"$out"
}

if [[ -z "${IMP_FIRECRACKER_BIN:-}" ]]; then
    how_to_provide
    exit 2
fi

firecracker=$(realpath -m "$IMP_FIRECRACKER_BIN")
fc_version=$(version_of "$firecracker")
[[ "$fc_version" == Firecracker\ v* ]] || die "$firecracker is not Firecracker: '$fc_version'"
log "$fc_version at $firecracker"
echo "IMP_FIRECRACKER_BIN=$firecracker"

if [[ -n "${IMP_JAILER_BIN:-}" ]]; then
    jailer=$(realpath -m "$IMP_JAILER_BIN")
    jailer_version=$(version_of "$jailer")
    [[ "$jailer_version" == Jailer\ v* ]] || die "$jailer is not the jailer: '$jailer_version'"
    log "$jailer_version at $jailer"
    # Firecracker ships both from one release; other pairs are untested by its authors.
    if [[ "${jailer_version#Jailer }" != "${fc_version#Firecracker }" ]]; then
        log "warning: jailer ${jailer_version#Jailer } and firecracker ${fc_version#Firecracker }" \
            "are from different releases"
    fi
    echo "IMP_JAILER_BIN=$jailer"
fi

# Running needs KVM; the binaries themselves do not, so this only warns.
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    log "warning: /dev/kvm is missing or not read-writable for $(id -un): VMs cannot start"
fi
