# loadshed: a Kubernetes operator that sheds load during incidents.
#
# `make` (or `make help`) lists the targets. Tools are pinned Go modules in
# hack/tools and built once into bin/<tool>-<version>; nothing is downloaded
# but Go modules.

# The build's version, revision and time, from hack/version.sh, the one place
# that defines them (docs/release.md); exported, so that every recipe and
# script sees the same. Each is computed once per make run; set one on the
# command line to override it (e.g. VERSION=v0.1.0).
ifndef VERSION
VERSION := $(shell hack/version.sh)
endif
ifndef REVISION
REVISION := $(shell hack/version.sh revision)
endif
ifndef SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH := $(shell hack/version.sh created)
endif
export VERSION REVISION SOURCE_DATE_EPOCH

# Image to build, push and deploy.
IMG ?= ghcr.io/loadshed/loadshed:$(VERSION)

# Extra flags for `go test` (e.g. GO_TEST_FLAGS='-run TestFoo -v') and the
# packages to test.
GO_TEST_FLAGS ?=
GO_TEST_PKGS ?= $(shell go list ./... | grep -v /test/replay)
# How many test packages run at once. Most of the suites' time is spent
# waiting (for an interval, a probation, a lease), not computing, so three run
# beside each other on 2 cores; each suite has its own control plane.
GO_TEST_P ?= 3
# The incident replay test runs alone, after the others and without the race
# detector: it floods an API server on purpose, and both of its scenarios
# must see the same, otherwise idle, machine (the replay code itself is
# race-tested in internal/replay). REPLAY_TEST_PKGS= skips it.
REPLAY_TEST_PKGS ?= ./test/replay

# Extra flags for `make demo` (go run ./cmd/replay -h lists them), e.g.
# DEMO_ARGS='--nodes=200 --configmaps=10000' on a bigger machine.
DEMO_ARGS ?=

# Extra flags for `make run`.
ARGS ?= --leader-elect=false

# Versions of the tools, pinned here and in hack/tools: a tool's version here
# must equal its pin there (the build checks it). To bump one, change both:
#   go -C hack/tools get -tool sigs.k8s.io/controller-tools/cmd/controller-gen@vX.Y.Z
# golangci-lint has its own module, hack/tools/golangci-lint, as its authors
# advise. setup-envtest is run by hack/controlplane/ensure.sh with `go tool`.
# Any of them also runs without make, e.g. `cd hack/tools && go tool controller-gen --help`.
CONTROLLER_TOOLS_VERSION := v0.23.0
GOLANGCI_LINT_VERSION := v2.15.0
SETUP_ENVTEST_VERSION := v0.25.1
KUSTOMIZE_VERSION := v5.8.2
# Helm has its own module, hack/helm (see its go.mod).
HELM_VERSION := v4.3.2
# cyclonedx-gomod has its own module, hack/tools/cyclonedx-gomod, so that its
# dependencies move no other tool's.
CYCLONEDX_GOMOD_VERSION := v1.10.0
# Prometheus has its own module, hack/prometheus: promtool and the
# Prometheus server are built from it. To bump it:
#   go -C hack/prometheus get -tool github.com/prometheus/prometheus/cmd/promtool@vX.Y.Z
#   go -C hack/prometheus get -tool github.com/prometheus/prometheus/cmd/prometheus@vX.Y.Z
PROMETHEUS_VERSION := v0.316.0

TOOLS_MOD := hack/tools
GOLANGCI_LINT_MOD := hack/tools/golangci-lint
CYCLONEDX_GOMOD_MOD := hack/tools/cyclonedx-gomod
PROMETHEUS_MOD := hack/prometheus

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
SETUP_ENVTEST ?= $(LOCALBIN)/setup-envtest-$(SETUP_ENVTEST_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
HELM_MOD := hack/helm
CYCLONEDX_GOMOD ?= $(LOCALBIN)/cyclonedx-gomod-$(CYCLONEDX_GOMOD_VERSION)
PROMTOOL ?= $(LOCALBIN)/promtool-$(PROMETHEUS_VERSION)
# The Prometheus server the tests scrape the local cluster's kube-apiservers
# with (internal/promserver).
PROMETHEUS ?= $(LOCALBIN)/prometheus-$(PROMETHEUS_VERSION)
# Build tags of Prometheus's binaries: remove_all_sd leaves out the service
# discoveries (cloud SDKs), which checking and testing rules never use; the
# server keeps static_configs and file_sd (plugins/minimum.go), all the tests
# need. Without the builtinassets tag the server's web UI looks for its
# assets on disk (absent: the UI's pages fail), but its HTTP API (/api/v1/query,
# query_range, /-/ready), all the tests and the operator use, works.
PROMETHEUS_BUILD_TAGS ?= remove_all_sd

CONTAINER_TOOL ?= docker
KUBECTL ?= kubectl

# Every recipe runs in bash with -e and pipefail, so that a failing command on
# the left of a pipe (e.g. kustomize in `make deploy`) fails the target.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.DEFAULT_GOAL := help

##@ General

# The help target prints every target that has a `## text` comment, grouped
# under the `##@` headings.
.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRDs (config/crd/bases) and the manager's ClusterRole (config/rbac/role.yaml); copy the CRDs and the alert rules into charts/loadshed.
	$(CONTROLLER_GEN) rbac:roleName=loadshed-manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	cp config/crd/bases/*.yaml charts/loadshed/files/crds/
	cp config/prometheus/prometheusrule.yaml charts/loadshed/files/prometheusrule.yaml

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods (zz_generated.deepcopy.go).
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Check .golangci.yml against its schema, then run golangci-lint with it.
	$(GOLANGCI_LINT) config verify --config .golangci.yml
	$(GOLANGCI_LINT) run --config .golangci.yml

.PHONY: lint-fix
lint-fix: $(GOLANGCI_LINT) ## Run golangci-lint and apply the fixes it can (formatting, imports, ...).
	$(GOLANGCI_LINT) run --config .golangci.yml --fix

# The control plane's binaries the tests use: envtest's two, the
# components internal/localcluster runs beside them, and kubectl (the tests
# run `make undeploy` with it).
CONTROLPLANE_COMPONENTS := etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok

.PHONY: controlplane
controlplane: ## Build (first time, ~20 min) or reuse etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok; prints their directory.
	@hack/controlplane/ensure.sh $(CONTROLPLANE_COMPONENTS)

# The tests find the control plane through KUBEBUILDER_ASSETS (envtest) and
# LOADSHED_ASSETS (the project's own suites); both name the same directory.
# test/chart and test/faults find the pinned Helm and kustomize through
# LOADSHED_HELM and LOADSHED_KUSTOMIZE; test/release finds the SBOM generator
# through LOADSHED_CYCLONEDX_GOMOD; test/monitoring finds promtool through
# LOADSHED_PROMTOOL; test/prometheus and the replay find the Prometheus server
# through LOADSHED_PROMETHEUS. The dashboard's test is in hack/prometheus, which has the
# PromQL parser (see its go.mod).
.PHONY: test
test: manifests generate fmt vet controlplane $(HELM) $(KUSTOMIZE) $(CYCLONEDX_GOMOD) $(PROMTOOL) $(PROMETHEUS) ## Run all tests with the race detector against the local control plane.
	@assets="$$(hack/controlplane/ensure.sh $(CONTROLPLANE_COMPONENTS))"; \
	echo "KUBEBUILDER_ASSETS=$$assets"; \
	export KUBEBUILDER_ASSETS="$$assets" LOADSHED_ASSETS="$$assets" LOADSHED_HELM="$(HELM)" LOADSHED_KUSTOMIZE="$(KUSTOMIZE)" \
		LOADSHED_CYCLONEDX_GOMOD="$(CYCLONEDX_GOMOD)" LOADSHED_PROMTOOL="$(PROMTOOL)" LOADSHED_PROMETHEUS="$(PROMETHEUS)"; \
	set -ex; go test -p $(GO_TEST_P) -race -count=1 -timeout=25m $(GO_TEST_FLAGS) $(GO_TEST_PKGS); \
	go -C $(PROMETHEUS_MOD) test -count=1 ./...; \
	if [ -n "$(REPLAY_TEST_PKGS)" ]; then go test -count=1 -timeout=30m $(GO_TEST_FLAGS) $(REPLAY_TEST_PKGS); fi

# verify regenerates everything and fails if that changed a tracked file or
# left a new file under config/, api/ or charts/ (e.g. a CRD for a new kind).
.PHONY: verify
verify: manifests generate ## Fail if generated files (CRDs, RBAC, deepcopy) are stale or not committed.
	@if ! git diff --exit-code --stat; then \
		echo "error: the files above differ from what is committed (or staged)." >&2; \
		echo "       If they are generated, 'make manifests generate' just rewrote them: review and commit them." >&2; \
		exit 1; \
	fi
	@untracked="$$(git ls-files --others --exclude-standard -- config api charts)"; \
	if [ -n "$$untracked" ]; then \
		echo "$$untracked" >&2; \
		echo "error: the files above under config/, api/ or charts/ are not tracked by git." >&2; \
		echo "       If they are generated, 'make manifests generate' just wrote them: git add and commit them." >&2; \
		exit 1; \
	fi
	@echo "verify: generated files are up to date."

##@ Build

# hack/build.sh holds the go build flags every build uses (static, -trimpath,
# -ldflags stamping $(VERSION) and $(REVISION)); the Dockerfile runs it too.
.PHONY: build
build: manifests generate fmt vet kubectl-loadshed ## Build the manager into bin/loadshed-operator and the kubectl plugin into bin/kubectl-loadshed, stamped with $(VERSION).
	hack/build.sh -o bin/loadshed-operator ./cmd/manager

.PHONY: kubectl-loadshed
kubectl-loadshed: ## Build the kubectl plugin into bin/kubectl-loadshed: with it on PATH, `kubectl loadshed` runs it (docs/kubectl.md).
	hack/build.sh -o bin/kubectl-loadshed ./cmd/kubectl-loadshed

# DEMO_ARGS=--source=prometheus runs the sample policy that reads Prometheus,
# against a Prometheus server the replay starts: the demo builds it then.
.PHONY: demo
demo: manifests controlplane $(if $(findstring --source=prometheus,$(DEMO_ARGS)),$(PROMETHEUS)) ## Replay the 2024-12-11 incident on a local control plane, without and with loadshed, and score both (DEMO_ARGS=...).
	@assets="$$(hack/controlplane/ensure.sh $(CONTROLPLANE_COMPONENTS))"; \
	go run ./cmd/replay --assets="$$assets" --prometheus="$(PROMETHEUS)" $(DEMO_ARGS)

# Extra flags for `make scale` (go run ./cmd/scale -h lists them).
SCALE_ARGS ?=

.PHONY: scale
scale: manifests controlplane ## Measure the operator's binary on a quiet 5,000-Node cluster: memory, CPU, requests (docs/scale.md; SCALE_ARGS=...).
	@assets="$$(hack/controlplane/ensure.sh $(CONTROLPLANE_COMPONENTS))"; \
	go run ./cmd/scale --assets="$$assets" $(SCALE_ARGS)

.PHONY: run
run: manifests generate fmt vet ## Run the manager against the cluster in ~/.kube/config (flags: ARGS=...).
	go run ./cmd/manager $(ARGS)

# docker-build needs a Docker engine (there is none on the development
# machines: build the image where one runs, or in CI).
.PHONY: docker-build
docker-build: ## Build the container image $(IMG) (needs a Docker engine).
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the container image $(IMG).
	$(CONTAINER_TOOL) push $(IMG)

# make image builds without a container engine: hack/build.sh builds the
# operator for each of IMAGE_PLATFORMS, cmd/image assembles them with a base
# layer it writes itself into an OCI layout, and cyclonedx-gomod writes each
# binary's SBOM beside it (docs/release.md). Everything goes under $(DIST).
DIST ?= dist
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
IMAGE_DIR = $(DIST)/image
# image-binary is where the binary of platform $(1) (e.g. linux/arm64) goes.
image-binary = $(DIST)/bin/$(subst /,_,$(1))/loadshed-operator

.PHONY: image
image: image-binaries sbom ## Build the operator's OCI image index for $(IMAGE_PLATFORMS) into dist/image/ (OCI layout) with its SBOMs; no container engine.
	rm -rf $(IMAGE_DIR)
	go run ./cmd/image build --out $(IMAGE_DIR) --version $(VERSION) --revision $(REVISION) --created $(SOURCE_DATE_EPOCH) \
		$(foreach p,$(IMAGE_PLATFORMS),--binary $(p)=$(call image-binary,$(p)))

.PHONY: image-binaries
image-binaries:
	$(foreach p,$(IMAGE_PLATFORMS),GOOS=$(word 1,$(subst /, ,$(p))) GOARCH=$(word 2,$(subst /, ,$(p))) \
		hack/build.sh -o $(call image-binary,$(p)) ./cmd/manager;)

# The SBOMs describe the binaries as built (Go's build info in them); the
# licenses are read from the module cache, which the build just filled
# (GOPROXY=off: nothing is looked up). No timestamp nor serial number, so that
# the same binary gives the same file.
.PHONY: sbom
sbom: image-binaries $(CYCLONEDX_GOMOD) ## Write a CycloneDX SBOM of each platform's operator binary to dist/loadshed-operator_<os>_<arch>.cdx.json.
	$(foreach p,$(IMAGE_PLATFORMS),GOPROXY=off $(CYCLONEDX_GOMOD) bin -json -licenses -std -noserial -notimestamp \
		-version $(VERSION) -output $(DIST)/loadshed-operator_$(subst /,_,$(p)).cdx.json $(call image-binary,$(p));)

.PHONY: image-push
image-push: image ## Push the image index built by make image to $(IMG), with the credentials of ~/.docker/config.json.
	go run ./cmd/image push --from $(IMAGE_DIR) --to $(IMG)

.PHONY: build-installer
build-installer: manifests generate $(KUSTOMIZE) ## Render config/default with image $(IMG) into dist/install.yaml.
	@mkdir -p dist
	@$(call render-default) > dist/install.yaml
	@echo "wrote dist/install.yaml (image $(IMG))"

.PHONY: chart
chart: manifests $(HELM) ## Package charts/loadshed into dist/loadshed-<VERSION without v>.tgz.
	@mkdir -p $(DIST)
	$(HELM) lint --strict charts/loadshed
	$(HELM) package charts/loadshed --destination $(DIST) --version "$(VERSION:v%=%)" --app-version "$(VERSION)"

# make plugin-dist packages the kubectl plugin for krew (docs/release.md):
# hack/build.sh builds it for each of PLUGIN_PLATFORMS, and cmd/plugin-dist
# writes dist/kubectl-loadshed_<os>_<arch>.tar.gz (the binary and
# README.md, reproducibly) and renders the krew manifest's template,
# .krew.yaml, into dist/loadshed.yaml with each archive's sha256.
PLUGIN_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
# plugin-binary is where the plugin of platform $(1) (e.g. darwin/arm64) goes.
plugin-binary = $(DIST)/bin/$(subst /,_,$(1))/kubectl-loadshed

.PHONY: plugin-dist
plugin-dist: ## Build the kubectl plugin's krew archives for $(PLUGIN_PLATFORMS) and its krew manifest into dist/.
	$(foreach p,$(PLUGIN_PLATFORMS),GOOS=$(word 1,$(subst /, ,$(p))) GOARCH=$(word 2,$(subst /, ,$(p))) \
		hack/build.sh -o $(call plugin-binary,$(p)) ./cmd/kubectl-loadshed;)
	go run ./cmd/plugin-dist --template .krew.yaml --tag $(VERSION) --dist $(DIST) --modtime $(SOURCE_DATE_EPOCH) \
		--file README.md $(foreach p,$(PLUGIN_PLATFORMS),--binary $(p)=$(call plugin-binary,$(p)))

##@ Deployment

ignore-not-found ?= false

.PHONY: install
install: manifests ## Install the CRDs into the cluster in ~/.kube/config.
	$(KUBECTL) apply -k config/crd

# How long `loadshed-operator uninstall` waits for the policies' finalizers.
UNINSTALL_TIMEOUT ?= 5m

# give-back deletes every LoadShedPolicy while the operator still runs, so
# that its finalizers restore every paused DaemonSet and delete the
# throttles, then deletes loadshed's self-protection FlowSchema; it fails,
# having removed nothing else, if the policies are not gone in time (see
# docs/install.md). It uses the same kubeconfig as kubectl (KUBECONFIG or
# ~/.kube/config).
define give-back
go run ./cmd/manager uninstall --timeout=$(UNINSTALL_TIMEOUT)
endef

.PHONY: uninstall
uninstall: manifests ## Give back everything loadshed holds (needs the operator running), then remove the CRDs.
	$(call give-back)
	$(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -k config/crd

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy the operator with image $(IMG) to the cluster in ~/.kube/config.
	$(call render-default) | $(KUBECTL) apply -f -

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Give back everything loadshed holds, then remove the operator and its CRD (ignore-not-found=true to ignore missing objects).
	$(call give-back)
	$(call render-default) | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) --wait -f -

# render-default prints config/default with the image set to $(IMG)
# (config/manager names ghcr.io/loadshed/loadshed, untagged). It sets
# the image in a throw-away overlay under bin/ (kustomize takes only relative
# paths), so no tracked file is edited.
define render-default
mkdir -p "$(CURDIR)/bin"; overlay="$$(mktemp -d "$(CURDIR)/bin/overlay.XXXXXX")"; trap 'rm -rf "$$overlay"' EXIT; \
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../config/default\n' > "$$overlay/kustomization.yaml"; \
(cd "$$overlay" && $(KUSTOMIZE) edit set image ghcr.io/loadshed/loadshed=$(IMG)); \
$(KUSTOMIZE) build "$$overlay"
endef

##@ Tools

.PHONY: tools
tools: $(CONTROLLER_GEN) $(GOLANGCI_LINT) $(SETUP_ENVTEST) $(KUSTOMIZE) $(HELM) $(CYCLONEDX_GOMOD) $(PROMTOOL) $(PROMETHEUS) ## Build all pinned tools into bin/.

.PHONY: promtool
promtool: $(PROMTOOL) ## Build promtool (rule checks and unit tests) from hack/prometheus into bin/promtool-<version>.

.PHONY: prometheus
prometheus: $(PROMETHEUS) ## Build the Prometheus server the tests run (cold: ~3.5 CPU-minutes, 2m45s on 2 cores) into bin/prometheus-<version>.

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

$(CONTROLLER_GEN): | $(LOCALBIN)
	$(call go-build-tool,$@,$(TOOLS_MOD),sigs.k8s.io/controller-tools/cmd/controller-gen,sigs.k8s.io/controller-tools,$(CONTROLLER_TOOLS_VERSION))

$(SETUP_ENVTEST): | $(LOCALBIN)
	$(call go-build-tool,$@,$(TOOLS_MOD),sigs.k8s.io/controller-runtime/tools/setup-envtest,sigs.k8s.io/controller-runtime/tools/setup-envtest,$(SETUP_ENVTEST_VERSION))

$(KUSTOMIZE): | $(LOCALBIN)
	$(call go-build-tool,$@,$(TOOLS_MOD),sigs.k8s.io/kustomize/kustomize/v5,sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

$(HELM): | $(LOCALBIN)
	$(call go-build-tool,$@,$(HELM_MOD),helm.sh/helm/v4/cmd/helm,helm.sh/helm/v4,$(HELM_VERSION))

.PHONY: helm
helm: $(HELM) ## Build the pinned Helm into bin/helm-$(HELM_VERSION) (cold: ~4.5 CPU-minutes, 8 min on a busy 2-core machine).

$(GOLANGCI_LINT): | $(LOCALBIN)
	$(call go-build-tool,$@,$(GOLANGCI_LINT_MOD),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,github.com/golangci/golangci-lint/v2,$(GOLANGCI_LINT_VERSION))

$(CYCLONEDX_GOMOD): | $(LOCALBIN)
	$(call go-build-tool,$@,$(CYCLONEDX_GOMOD_MOD),github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod,github.com/CycloneDX/cyclonedx-gomod,$(CYCLONEDX_GOMOD_VERSION))

$(PROMTOOL): export GOFLAGS += -tags=$(PROMETHEUS_BUILD_TAGS)
$(PROMTOOL): | $(LOCALBIN)
	$(call go-build-tool,$@,$(PROMETHEUS_MOD),github.com/prometheus/prometheus/cmd/promtool,github.com/prometheus/prometheus,$(PROMETHEUS_VERSION))

$(PROMETHEUS): export GOFLAGS += -tags=$(PROMETHEUS_BUILD_TAGS)
$(PROMETHEUS): | $(LOCALBIN)
	$(call go-build-tool,$@,$(PROMETHEUS_MOD),github.com/prometheus/prometheus/cmd/prometheus,github.com/prometheus/prometheus,$(PROMETHEUS_VERSION))

# A tool is built when bin/<tool>-<version> is missing: its version is in its
# name, so bumping the pin builds the new one. The tool modules' go.mod files
# are not prerequisites, because a fresh clone's files are all newer than the
# binaries in a reused bin/ (CI would relink every tool on every run); after
# changing another dependency of a tool module, delete the tool's binary.

# go-build-tool builds a tool from its pinned module into bin/<tool>-<version>,
# after checking that the module pins the version this Makefile names.
# $(1) binary, $(2) tools module folder, $(3) package, $(4) module, $(5) version.
define go-build-tool
@pinned="$$(go -C $(2) list -m -f '{{.Version}}' $(4))"; \
if [ "$$pinned" != "$(5)" ]; then \
	echo "error: $(2)/go.mod pins $(4) $$pinned, but the Makefile names $(5)." >&2; \
	echo "       Make them agree, e.g.: go -C $(2) get -tool $(3)@$(5)" >&2; \
	exit 1; \
fi; \
echo "building $(notdir $(1)) from $(2)"; \
go -C $(2) build -o $(1).tmp $(3); \
mv $(1).tmp $(1)
endef
