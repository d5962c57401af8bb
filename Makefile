# loadshed: a Kubernetes operator that sheds load during incidents.
#
# `make` (or `make help`) lists the targets. Tools are pinned Go modules in
# hack/tools and built once into bin/<tool>-<version>; nothing is downloaded
# but Go modules.

# Image to build, push and deploy.
IMG ?= controller:latest

# Extra flags for `go test` (e.g. GO_TEST_FLAGS='-run TestFoo -v') and the
# packages to test.
GO_TEST_FLAGS ?=
GO_TEST_PKGS ?= $(shell go list ./... | grep -v /test/replay)
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
# Prometheus has its own module, hack/prometheus: promtool (and later the
# Prometheus server) are built from it. To bump it:
#   go -C hack/prometheus get -tool github.com/prometheus/prometheus/cmd/promtool@vX.Y.Z
PROMETHEUS_VERSION := v0.316.0

TOOLS_MOD := hack/tools
GOLANGCI_LINT_MOD := hack/tools/golangci-lint
PROMETHEUS_MOD := hack/prometheus

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
SETUP_ENVTEST ?= $(LOCALBIN)/setup-envtest-$(SETUP_ENVTEST_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
PROMTOOL ?= $(LOCALBIN)/promtool-$(PROMETHEUS_VERSION)
# Build tags of Prometheus's binaries: remove_all_sd leaves out the service
# discoveries (cloud SDKs), which checking and testing rules never use.
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
manifests: $(CONTROLLER_GEN) ## Generate the CRDs (config/crd/bases) and the manager's ClusterRole (config/rbac/role.yaml).
	$(CONTROLLER_GEN) rbac:roleName=loadshed-manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

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

# The control plane's binaries the tests use: envtest's two, and the
# components internal/localcluster runs beside them.
CONTROLPLANE_COMPONENTS := etcd kube-apiserver kube-controller-manager kube-scheduler kwok

.PHONY: controlplane
controlplane: ## Build (first time, ~20 min) or reuse etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok; prints their directory.
	@hack/controlplane/ensure.sh $(CONTROLPLANE_COMPONENTS)

# The tests find the control plane through KUBEBUILDER_ASSETS (envtest) and
# LOADSHED_ASSETS (the project's own suites); both name the same directory.
# test/monitoring finds promtool through LOADSHED_PROMTOOL. The dashboard's
# test is in hack/prometheus, which has the PromQL parser (see its go.mod).
.PHONY: test
test: manifests generate fmt vet controlplane $(PROMTOOL) ## Run all tests with the race detector against the local control plane.
	@assets="$$(hack/controlplane/ensure.sh $(CONTROLPLANE_COMPONENTS))"; \
	echo "KUBEBUILDER_ASSETS=$$assets"; \
	export KUBEBUILDER_ASSETS="$$assets" LOADSHED_ASSETS="$$assets" LOADSHED_PROMTOOL="$(PROMTOOL)"; \
	set -ex; go test -race -count=1 -timeout=25m $(GO_TEST_FLAGS) $(GO_TEST_PKGS); \
	go -C $(PROMETHEUS_MOD) test -count=1 ./...; \
	if [ -n "$(REPLAY_TEST_PKGS)" ]; then go test -count=1 -timeout=30m $(GO_TEST_FLAGS) $(REPLAY_TEST_PKGS); fi

# verify regenerates everything and fails if that changed a tracked file or
# left a new file under config/ or api/ (e.g. a CRD for a new kind).
.PHONY: verify
verify: manifests generate ## Fail if generated files (CRDs, RBAC, deepcopy) are stale or not committed.
	@if ! git diff --exit-code --stat; then \
		echo "error: the files above differ from what is committed (or staged)." >&2; \
		echo "       If they are generated, 'make manifests generate' just rewrote them: review and commit them." >&2; \
		exit 1; \
	fi
	@untracked="$$(git ls-files --others --exclude-standard -- config api)"; \
	if [ -n "$$untracked" ]; then \
		echo "$$untracked" >&2; \
		echo "error: the files above under config/ or api/ are not tracked by git." >&2; \
		echo "       If they are generated, 'make manifests generate' just wrote them: git add and commit them." >&2; \
		exit 1; \
	fi
	@echo "verify: generated files are up to date."

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager binary into bin/loadshed-operator.
	go build -trimpath -o bin/loadshed-operator ./cmd/manager

.PHONY: demo
demo: manifests controlplane ## Replay the 2024-12-11 incident on a local control plane, without and with loadshed, and score both (DEMO_ARGS=...).
	@assets="$$(hack/controlplane/ensure.sh $(CONTROLPLANE_COMPONENTS))"; \
	go run ./cmd/replay --assets="$$assets" $(DEMO_ARGS)

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
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the container image $(IMG).
	$(CONTAINER_TOOL) push $(IMG)

.PHONY: build-installer
build-installer: manifests generate $(KUSTOMIZE) ## Render config/default with image $(IMG) into dist/install.yaml.
	@mkdir -p dist
	@$(call render-default) > dist/install.yaml
	@echo "wrote dist/install.yaml (image $(IMG))"

##@ Deployment

ignore-not-found ?= false

.PHONY: install
install: manifests ## Install the CRDs into the cluster in ~/.kube/config.
	$(KUBECTL) apply -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs from the cluster (ignore-not-found=true to ignore missing ones).
	$(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -k config/crd

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy the operator with image $(IMG) to the cluster in ~/.kube/config.
	$(call render-default) | $(KUBECTL) apply -f -

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove the operator from the cluster (ignore-not-found=true to ignore missing objects).
	$(call render-default) | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

# render-default prints config/default with the image set to $(IMG). It sets
# the image in a throw-away overlay under bin/ (kustomize takes only relative
# paths), so no tracked file is edited.
define render-default
mkdir -p "$(CURDIR)/bin"; overlay="$$(mktemp -d "$(CURDIR)/bin/overlay.XXXXXX")"; trap 'rm -rf "$$overlay"' EXIT; \
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../config/default\n' > "$$overlay/kustomization.yaml"; \
(cd "$$overlay" && $(KUSTOMIZE) edit set image controller=$(IMG)); \
$(KUSTOMIZE) build "$$overlay"
endef

##@ Tools

.PHONY: tools
tools: $(CONTROLLER_GEN) $(GOLANGCI_LINT) $(SETUP_ENVTEST) $(KUSTOMIZE) $(PROMTOOL) ## Build all pinned tools into bin/.

.PHONY: promtool
promtool: $(PROMTOOL) ## Build promtool (rule checks and unit tests) from hack/prometheus into bin/promtool-<version>.

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

$(CONTROLLER_GEN): $(TOOLS_MOD)/go.mod $(TOOLS_MOD)/go.sum | $(LOCALBIN)
	$(call go-build-tool,$@,$(TOOLS_MOD),sigs.k8s.io/controller-tools/cmd/controller-gen,sigs.k8s.io/controller-tools,$(CONTROLLER_TOOLS_VERSION))

$(SETUP_ENVTEST): $(TOOLS_MOD)/go.mod $(TOOLS_MOD)/go.sum | $(LOCALBIN)
	$(call go-build-tool,$@,$(TOOLS_MOD),sigs.k8s.io/controller-runtime/tools/setup-envtest,sigs.k8s.io/controller-runtime/tools/setup-envtest,$(SETUP_ENVTEST_VERSION))

$(KUSTOMIZE): $(TOOLS_MOD)/go.mod $(TOOLS_MOD)/go.sum | $(LOCALBIN)
	$(call go-build-tool,$@,$(TOOLS_MOD),sigs.k8s.io/kustomize/kustomize/v5,sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

$(GOLANGCI_LINT): $(GOLANGCI_LINT_MOD)/go.mod $(GOLANGCI_LINT_MOD)/go.sum | $(LOCALBIN)
	$(call go-build-tool,$@,$(GOLANGCI_LINT_MOD),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,github.com/golangci/golangci-lint/v2,$(GOLANGCI_LINT_VERSION))

$(PROMTOOL): export GOFLAGS += -tags=$(PROMETHEUS_BUILD_TAGS)
$(PROMTOOL): $(PROMETHEUS_MOD)/go.mod $(PROMETHEUS_MOD)/go.sum | $(LOCALBIN)
	$(call go-build-tool,$@,$(PROMETHEUS_MOD),github.com/prometheus/prometheus/cmd/promtool,github.com/prometheus/prometheus,$(PROMETHEUS_VERSION))

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
