#!/usr/bin/env bash
# Build the local cluster's binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, helm) from pinned Go modules into a cache outside the
# repository, keyed by version. A component whose binaries are already cached is skipped.
#
# Usage: build-binaries.sh            build what is missing, print the bin directory
# Env:   AIML_CLUSTER_CACHE           cache root (default ~/.cache/aiml-training-operator/cluster)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${AIML_CLUSTER_CACHE:-$HOME/.cache/aiml-training-operator/cluster}"
bin="$cache/bin"
mkdir -p "$bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

log() { printf '[build-binaries] %s\n' "$*" >&2; }

# Print the staging module paths that k8s.io/kubernetes maps to ./staging/src.
kubernetes_staging_modules() {
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  sed -n 's/^[[:space:]]*\(k8s\.io\/[a-z0-9-]*\) => \.\/staging\/.*/\1/p' "$gomod"
}

build_kubernetes() {
  local out="$bin/kubernetes-$KUBERNETES_VERSION"
  local names=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  if [[ -x "$out/kubectl" && -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" && -x "$out/kube-scheduler" ]]; then
    return
  fi
  local work="$cache/src/kubernetes-$KUBERNETES_VERSION"
  rm -rf "$work" && mkdir -p "$work" "$out"
  log "building Kubernetes $KUBERNETES_VERSION (staging modules at $KUBERNETES_STAGING_VERSION) in $work"

  {
    echo "module local/kubernetes-build"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    kubernetes_staging_modules | while read -r module; do
      echo "	$module => $module $KUBERNETES_STAGING_VERSION"
    done
    echo ")"
  } >"$work/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    for name in "${names[@]}"; do echo "import _ \"k8s.io/kubernetes/cmd/$name\""; done
  } >"$work/tools.go"

  local major minor
  major="${KUBERNETES_VERSION#v}"; major="${major%%.*}"
  minor="${KUBERNETES_VERSION#v*.}"; minor="${minor%%.*}"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done

  (
    cd "$work"
    go mod tidy -e >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }
    for name in "${names[@]}"; do
      log "go build k8s.io/kubernetes/cmd/$name"
      go build -trimpath -tags tools -ldflags "$ldflags" -o "$out/$name.tmp" "k8s.io/kubernetes/cmd/$name"
      mv "$out/$name.tmp" "$out/$name"
    done
  )
}

build_etcd() {
  local out="$bin/etcd-$ETCD_VERSION"
  [[ -x "$out/etcd" ]] && return
  local work="$cache/src/etcd-$ETCD_VERSION"
  rm -rf "$work" && mkdir -p "$work" "$out"
  log "building etcd $ETCD_VERSION in $work"
  cat >"$work/go.mod" <<GOMOD
module local/etcd-build

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat >"$work/main.go" <<'GO'
// Command etcd runs the etcd server from go.etcd.io/etcd/server/v3 with its usual flags.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
  (
    cd "$work"
    go mod tidy >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }
    go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" .
    mv "$out/etcd.tmp" "$out/etcd"
  )
}

build_helm() {
  local out="$bin/helm-$HELM_VERSION"
  [[ -x "$out/helm" ]] && return
  local work="$cache/src/helm-$HELM_VERSION"
  rm -rf "$work" && mkdir -p "$work" "$out"
  log "building helm $HELM_VERSION in $work"
  cat >"$work/go.mod" <<GOMOD
module local/helm-build

go 1.26

require helm.sh/helm/v4 $HELM_VERSION
GOMOD
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "helm.sh/helm/v4/cmd/helm"
GO
  (
    cd "$work"
    go mod tidy >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }
    go build -trimpath -tags tools -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" -o "$out/helm.tmp" helm.sh/helm/v4/cmd/helm
    mv "$out/helm.tmp" "$out/helm"
  )
}

build_etcd
build_helm
build_kubernetes

# One directory on PATH with every binary, as links into the per-version folders.
link_dir="$cache/path-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
mkdir -p "$link_dir"
for f in "$bin/kubernetes-$KUBERNETES_VERSION"/* "$bin/etcd-$ETCD_VERSION/etcd" "$bin/helm-$HELM_VERSION/helm"; do
  ln -sf "$f" "$link_dir/$(basename "$f")"
done
echo "$link_dir"
