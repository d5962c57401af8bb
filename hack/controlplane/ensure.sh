#!/usr/bin/env bash
# ensure.sh makes sure the local control-plane binaries exist under
# bin/k8s/<version>/ and prints that directory on stdout (everything else goes
# to stderr), so that callers can export it as KUBEBUILDER_ASSETS.
#
#   hack/controlplane/ensure.sh [component ...]
#
# Components: etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok
# (default: the first three; the incident replay also needs the last two). For each missing one, in this order:
#   1. a binary of that name in a KUBEBUILDER_ASSETS directory set by the user
#      is linked (envtest users already have etcd and kube-apiserver);
#   2. etcd and kube-apiserver are downloaded with setup-envtest, given at most
#      ENVTEST_DOWNLOAD_TIMEOUT seconds (a network that is not there fails fast);
#   3. otherwise the binary is built from source through the Go module proxy,
#      from the pinned modules beside this script. The first build takes about
#      15 minutes on 2 cores; later runs reuse the binaries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/hack/controlplane"
K8S_VERSION="${K8S_VERSION:-1.37.2}"
DEST="$ROOT/bin/k8s/$K8S_VERSION"
ENVTEST_DOWNLOAD_TIMEOUT="${ENVTEST_DOWNLOAD_TIMEOUT:-20}"

log() { echo "controlplane: $*" >&2; }

components=("$@")
if [ ${#components[@]} -eq 0 ]; then
	components=(etcd kube-apiserver kube-controller-manager)
fi

mkdir -p "$DEST"

# The user's own envtest assets, unless they are ours (make exports them).
user_assets="${KUBEBUILDER_ASSETS:-}"
if [ -n "$user_assets" ] && [ "$(cd "$user_assets" 2>/dev/null && pwd -P)" = "$(cd "$DEST" && pwd -P)" ]; then
	user_assets=""
fi

ldflags() {
	local major minor
	major="$(echo "$K8S_VERSION" | cut -d. -f1)"
	minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
	local flags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	echo "$flags"
}

build() {
	local name="$1" start
	start="$(date +%s)"
	case "$name" in
	etcd)
		log "building etcd from source (about 1.5 minutes the first time)"
		(cd "$HERE/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$DEST/etcd.tmp" .)
		;;
	kube-apiserver | kube-controller-manager | kube-scheduler | kubectl)
		log "building $name v$K8S_VERSION from source (kube-apiserver takes about 9 minutes the first time on 2 cores; the others reuse its build cache)"
		(cd "$HERE/kubernetes" && CGO_ENABLED=0 go build -trimpath -ldflags "$(ldflags)" -o "$DEST/$name.tmp" "k8s.io/kubernetes/cmd/$name")
		;;
	kwok)
		log "building kwok from source (about 2.5 minutes the first time)"
		(cd "$HERE/kwok" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$DEST/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok)
		# The stages that keep fake Nodes Ready (with leases) and move bound
		# pods to Running ship in kwok's module: copy them beside the binary.
		local mod
		mod="$(cd "$HERE/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
		rm -rf "$DEST/kwok-stages" && mkdir -p "$DEST/kwok-stages"
		for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
			pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
			cp "$mod/kustomize/stage/$f" "$DEST/kwok-stages/$(basename "$f")"
		done
		chmod -R u+w "$DEST/kwok-stages"
		;;
	*)
		log "unknown component $name"
		exit 2
		;;
	esac
	mv "$DEST/$name.tmp" "$DEST/$name"
	log "built $name in $(($(date +%s) - start))s"
}

download() {
	# setup-envtest ships etcd and kube-apiserver only.
	local tmp
	tmp="$(mktemp -d)"
	# Build setup-envtest first (from the pinned tools module, cached), so
	# that the time limit applies to the download alone.
	local setup="$ROOT/bin/setup-envtest"
	if ! (cd "$ROOT/hack/tools" && go build -o "$setup" sigs.k8s.io/controller-runtime/tools/setup-envtest); then
		log "could not build setup-envtest; building from source instead"
		return 1
	fi
	log "trying to download envtest binaries with setup-envtest (at most ${ENVTEST_DOWNLOAD_TIMEOUT}s)"
	if dir="$(timeout "$ENVTEST_DOWNLOAD_TIMEOUT" "$setup" use "$K8S_VERSION" --bin-dir "$tmp" -p path 2>/dev/null)" &&
		[ -x "$dir/etcd" ] && [ -x "$dir/kube-apiserver" ]; then
		for b in etcd kube-apiserver; do
			[ -e "$DEST/$b" ] || cp "$dir/$b" "$DEST/$b"
		done
		rm -rf "$tmp"
		return 0
	fi
	rm -rf "$tmp"
	log "download failed; building from source instead"
	return 1
}

tried_download=""
for c in "${components[@]}"; do
	if [ -x "$DEST/$c" ] && { [ "$c" != kwok ] || [ -d "$DEST/kwok-stages" ]; }; then
		continue
	fi
	if [ -n "$user_assets" ] && [ -x "$user_assets/$c" ]; then
		log "using $c from KUBEBUILDER_ASSETS=$user_assets"
		ln -sf "$user_assets/$c" "$DEST/$c"
		continue
	fi
	if [ "$c" = etcd ] || [ "$c" = kube-apiserver ]; then
		if [ -z "$tried_download" ] && [ "${ENVTEST_DOWNLOAD:-1}" = 1 ]; then
			tried_download=1
			if download && [ -x "$DEST/$c" ]; then
				continue
			fi
		fi
	fi
	build "$c"
done

echo "$DEST"
