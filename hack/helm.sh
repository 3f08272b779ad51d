#!/usr/bin/env bash
# Provides helm for the chart tests and `make` users.
#
# Order of preference:
#   1. IMP_HELM_BIN_DIR, when it holds an executable `helm`;
#   2. `helm` on PATH (linked into the cache dir), unless IMP_HELM_IGNORE_PATH is set;
#   3. built from the Go module proxy with the machine's Go, cached under
#      ${IMP_CACHE_DIR:-$HOME/.cache/imp}/helm/<version>/.
# Helm v3 is built first; if it fails to build, the v4 module is tried instead.
# Prints the directory holding `helm` as its last line of stdout. Progress goes to stderr.
set -euo pipefail

HELM_VERSION="${IMP_HELM_VERSION:-v3.21.4}"
HELM_FALLBACK_VERSION="${IMP_HELM_FALLBACK_VERSION:-v4.3.2}"
CACHE_ROOT="${IMP_CACHE_DIR:-$HOME/.cache/imp}"

log() { printf '[helm] %s\n' "$*" >&2; }

if [[ -n "${IMP_HELM_BIN_DIR:-}" ]]; then
  if [[ -x "$IMP_HELM_BIN_DIR/helm" ]]; then echo "$IMP_HELM_BIN_DIR"; exit 0; fi
  log "IMP_HELM_BIN_DIR=$IMP_HELM_BIN_DIR has no helm; falling back"
fi

for version in "$HELM_VERSION" "$HELM_FALLBACK_VERSION"; do
  if [[ -x "$CACHE_ROOT/helm/$version/helm" ]]; then echo "$CACHE_ROOT/helm/$version"; exit 0; fi
done

if command -v helm >/dev/null && [[ -z "${IMP_HELM_IGNORE_PATH:-}" ]]; then
  out="$CACHE_ROOT/helm/path"
  mkdir -p "$out"
  ln -sf "$(command -v helm)" "$out/helm"
  log "using helm found on PATH"
  echo "$out"; exit 0
fi

command -v go >/dev/null || {
  log "Go is needed to build helm (none found on PATH)"
  exit 1
}

# `go install` of a module's main package needs no go.mod of ours; GOBIN puts the binary
# straight into a temporary dir that only becomes the cache entry once the build succeeded.
# Helm's release builds stamp the Kubernetes version its client libraries speak (the default
# for `helm template` and `helm lint`); without it helm assumes 1.20. The same is done here,
# wherever the module declares those variables.
build() {
  local version="$1" major="${1%%.*}" out="$CACHE_ROOT/helm/$1" dir client_go pkg file
  log "building helm $version from the Go module proxy (minutes on a cold cache)"
  export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
  dir="$(go mod download -json "helm.sh/helm/$major@$version" \
    | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')" || return 1
  [[ -n "$dir" ]] || return 1
  client_go="$(awk '$1 == "k8s.io/client-go" { print $2 }' "$dir/go.mod")"
  local ldflags="-s -w -X helm.sh/helm/$major/internal/version.version=$version"
  while read -r file; do
    pkg="helm.sh/helm/$major$(dirname "${file#"$dir"}")"
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$(cut -d. -f2 <<<"$client_go")"
  done < <(grep -rl --include='*.go' --exclude='*_test.go' '^\s*k8sVersionMinor\s*=' "$dir")
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  GOBIN="$out.tmp" go install -trimpath -ldflags "$ldflags" \
    "helm.sh/helm/$major/cmd/helm@$version" >&2 || return 1
  rm -rf "$out" && mv "$out.tmp" "$out"
  log "built $("$out/helm" version --short 2>/dev/null || echo "helm $version")"
  echo "$out"
}

build "$HELM_VERSION" && exit 0
log "helm $HELM_VERSION did not build; trying $HELM_FALLBACK_VERSION"
build "$HELM_FALLBACK_VERSION"
