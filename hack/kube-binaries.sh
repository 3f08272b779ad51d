#!/usr/bin/env bash
# Provides kube-apiserver, etcd and kubectl for tests and `imp local up`.
#
# Order of preference:
#   1. IMP_KUBE_BIN_DIR, when it holds all three binaries;
#   2. all three on PATH (linked into the cache dir);
#   3. built from the Go module proxy with the machine's Go, cached under
#      ${IMP_CACHE_DIR:-$HOME/.cache/imp}/kube/<versions>/.
# Prints the directory holding the binaries as its last line of stdout.
# Progress goes to stderr.
set -euo pipefail

KUBE_VERSION="${IMP_KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${IMP_ETCD_VERSION:-v3.7.3}"
CACHE_ROOT="${IMP_CACHE_DIR:-$HOME/.cache/imp}"
OUT="$CACHE_ROOT/kube/kubernetes-$KUBE_VERSION-etcd-$ETCD_VERSION"
NAMES=(kube-apiserver etcd kubectl)

log() { printf '[kube-binaries] %s\n' "$*" >&2; }

# go build with a progress line each tenth of the packages it compiles; lines that are not
# package paths (compiler errors) pass through to stderr.
build_with_progress() { # LABEL GO-BUILD-ARGS...
  local label=$1 total
  shift
  total=$(go list -deps "${@: -1}" 2>/dev/null | wc -l)
  go build -v "$@" 2>&1 | awk -v total="$total" -v label="$label" '
    BEGIN { step = int(total / 10); if (step < 1) step = 1 }
    /: |^#/ { print > "/dev/stderr"; next }
    { n++; if (n % step == 0) printf "[kube-binaries] %s: %d of up to %d packages compiled\n", label, n, total > "/dev/stderr" }'
}

have_all() {
  local dir="$1" name
  for name in "${NAMES[@]}"; do [[ -x "$dir/$name" ]] || return 1; done
}

if [[ -n "${IMP_KUBE_BIN_DIR:-}" ]]; then
  if have_all "$IMP_KUBE_BIN_DIR"; then echo "$IMP_KUBE_BIN_DIR"; exit 0; fi
  log "IMP_KUBE_BIN_DIR=$IMP_KUBE_BIN_DIR lacks one of: ${NAMES[*]}; falling back"
fi

if have_all "$OUT"; then echo "$OUT"; exit 0; fi

if command -v kube-apiserver >/dev/null && command -v etcd >/dev/null \
  && command -v kubectl >/dev/null && [[ -z "${IMP_KUBE_IGNORE_PATH:-}" ]]; then
  mkdir -p "$OUT"
  for name in "${NAMES[@]}"; do ln -sf "$(command -v "$name")" "$OUT/$name"; done
  log "using binaries found on PATH"
  echo "$OUT"; exit 0
fi

command -v go >/dev/null || {
  log "Go is needed to build kube-apiserver, etcd and kubectl (none found on PATH)"
  exit 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
mkdir -p "$OUT.tmp"

# Kubernetes: a module that requires k8s.io/kubernetes and points every staging
# module (which the main module replaces with local paths) at its tagged version.
log "building kube-apiserver and kubectl $KUBE_VERSION from the Go module proxy (minutes on a cold cache)"
staging_version="v0.${KUBE_VERSION#v1.}"
gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
mkdir -p "$work/k8s" && cd "$work/k8s"
{
  echo "module imp.dev/hack/kube"
  echo "go $(go env GOVERSION | sed 's/^go//')"
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" \
    | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
log "fetching Kubernetes modules"
go mod tidy -e >&2 2>/dev/null || true
build_with_progress kube-apiserver -trimpath \
  -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION" \
  -o "$OUT.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
log "built kube-apiserver"
build_with_progress kubectl -trimpath \
  -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION" \
  -o "$OUT.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl
log "built kubectl"

# etcd: its server module exposes etcdmain; a two-line main calls it.
log "building etcd $ETCD_VERSION"
mkdir -p "$work/etcd" && cd "$work/etcd"
cat > go.mod <<GOMOD
module imp.dev/hack/etcd
go $(go env GOVERSION | sed 's/^go//')
require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
go mod tidy >&2
build_with_progress etcd -trimpath -ldflags "-s -w" -o "$OUT.tmp/etcd" .
log "built etcd"

rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "$OUT"
