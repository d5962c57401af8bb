package release_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestTheDockerfileBuildsWithTheSharedFlags checks, without Docker, that the
// Dockerfile builds the manager with hack/build.sh, the script make build
// and make image use, stamped from its VERSION and REVISION build
// arguments, from every source directory the manager is built from.
func TestTheDockerfileBuildsWithTheSharedFlags(t *testing.T) {
	dockerfile := read(t, "Dockerfile")
	if strings.Contains(dockerfile, "go build") || strings.Contains(dockerfile, "-ldflags") {
		t.Error("the Dockerfile runs go build itself: it must run hack/build.sh, which holds the flags")
	}
	build := regexp.MustCompile(`(?m)^RUN .*\\\n\s+hack/build\.sh -o loadshed-operator \./cmd/manager$`)
	if !build.MatchString(dockerfile) {
		t.Error("the Dockerfile has no RUN ... hack/build.sh -o loadshed-operator ./cmd/manager")
	}
	for _, want := range []string{"ARG VERSION=", "ARG REVISION=", "VERSION=${VERSION} REVISION=${REVISION}",
		"COPY hack/build.sh hack/build.sh", "USER 65532:65532", `ENTRYPOINT ["/loadshed-operator"]`} {
		if !strings.Contains(dockerfile, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	if !slices.Contains(strings.Split(read(t, ".dockerignore"), "\n"), "!hack/build.sh") {
		t.Error(".dockerignore leaves hack/build.sh out of the build context")
	}
	copied := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^COPY (\w+)/ `).FindAllStringSubmatch(dockerfile, -1) {
		copied[m[1]] = true
	}
	for _, dir := range sourceDirs(t) {
		if !copied[dir] {
			t.Errorf("the manager is built from %s/, which the Dockerfile does not copy", dir)
		}
	}
}

// TestTheMakefileBuildsWithTheSharedFlags checks that every go build of the
// project's binaries in the Makefile goes through hack/build.sh (the pinned
// tools aside, which are not shipped).
func TestTheMakefileBuildsWithTheSharedFlags(t *testing.T) {
	makefile := read(t, "Makefile")
	for _, line := range strings.Split(makefile, "\n") {
		recipe := strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "go ")
		if recipe && strings.Contains(line, "go build") && !strings.Contains(line, "go -C $(2) build") {
			t.Errorf("the Makefile runs go build outside hack/build.sh: %s", strings.TrimSpace(line))
		}
	}
	for _, want := range []string{"hack/build.sh -o bin/loadshed-operator ./cmd/manager",
		"hack/build.sh -o $(call image-binary,$(p)) ./cmd/manager", "VERSION := $(shell hack/version.sh)",
		"--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION)"} {
		if !strings.Contains(makefile, want) {
			t.Errorf("the Makefile lacks %q", want)
		}
	}
}

// sourceDirs are the top-level directories of the module that the manager
// imports packages from.
func sourceDirs(t *testing.T) []string {
	t.Helper()
	out := run(t, nil, "go", "list", "-deps", "-f",
		"{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd/manager")
	seen := map[string]bool{}
	var dirs []string
	abs, err := filepath.Abs(root(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range strings.Fields(out) {
		rel, err := filepath.Rel(abs, dir)
		if err != nil {
			t.Fatal(err)
		}
		top := strings.Split(filepath.ToSlash(rel), "/")[0]
		if !seen[top] {
			seen[top] = true
			dirs = append(dirs, top)
		}
	}
	if len(dirs) < 3 {
		t.Fatalf("the manager is built from %v only", dirs)
	}
	return dirs
}

func read(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
