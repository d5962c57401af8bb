package release_test

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/loadshed/loadshed/internal/image"
)

// testVersion and testCreated stand for hack/version.sh's version and the
// commit's time in the images the test builds.
const (
	testVersion = "v0.0.0-test.1"
	testCreated = 1767225600 // 2026-01-01T00:00:00Z
)

// makeImage runs `make image` with its output under dist, as a release
// would, with the SBOM generator make test built (LOADSHED_CYCLONEDX_GOMOD).
func makeImage(t *testing.T, dist string) {
	t.Helper()
	cdx := os.Getenv("LOADSHED_CYCLONEDX_GOMOD")
	if cdx == "" {
		t.Fatal("LOADSHED_CYCLONEDX_GOMOD is not set: run this test with `make test`, which builds " +
			"cyclonedx-gomod into bin/ and exports its path")
	}
	// -o: make must not rebuild the generator, only use it.
	run(t, nil, "make", "-s", "-o", cdx, "image", "DIST="+dist, "CYCLONEDX_GOMOD="+cdx,
		"VERSION="+testVersion, "REVISION="+revision(t), "SOURCE_DATE_EPOCH="+itoa(testCreated))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestMakeImageBuildsWhatItSays builds the image as `make image` does, reads
// it back from disk and checks each platform's image, then runs the binary
// of this machine's platform.
func TestMakeImageBuildsWhatItSays(t *testing.T) {
	dist := t.TempDir()
	makeImage(t, dist)
	idx, err := image.Read(filepath.Join(dist, "image"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	platforms := make([]string, 0, len(m.Manifests))
	for _, desc := range m.Manifests {
		platforms = append(platforms, desc.Platform.String())
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkConfig(t, desc.Platform.String(), img)
		files := checkFiles(t, desc.Platform.String(), img)
		if desc.Platform.String() == runtime.GOOS+"/"+runtime.GOARCH {
			checkBinaryRuns(t, files[image.BinaryPath[1:]])
		}
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Errorf("the index holds %v, want %v", platforms, want)
	}
	for _, p := range []string{"linux_amd64", "linux_arm64"} {
		checkSBOM(t, filepath.Join(dist, "loadshed-operator_"+p+".cdx.json"))
	}
	checkReproducible(t, dist)
}

// checkReproducible builds again, elsewhere, and checks that the image and
// the SBOMs are the same bytes.
func checkReproducible(t *testing.T, dist string) {
	t.Helper()
	again := t.TempDir()
	makeImage(t, again)
	for _, name := range []string{"image/index.json",
		"loadshed-operator_linux_amd64.cdx.json", "loadshed-operator_linux_arm64.cdx.json"} {
		first, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		second, err := os.ReadFile(filepath.Join(again, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(first) != string(second) {
			t.Errorf("two builds of the same commit differ in %s:\n%s\n%s", name, first, second)
		}
	}
}

func checkConfig(t *testing.T, platform string, img v1.Image) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS+"/"+cf.Architecture != platform {
		t.Errorf("%s: the config says %s/%s", platform, cf.OS, cf.Architecture)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("%s: user %q, want 65532:65532", platform, cf.Config.User)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/loadshed-operator"}) || len(cf.Config.Cmd) != 0 {
		t.Errorf("%s: entrypoint %q, cmd %q, want [/loadshed-operator] and none",
			platform, cf.Config.Entrypoint, cf.Config.Cmd)
	}
	want := map[string]string{
		"org.opencontainers.image.title":    "loadshed-operator",
		"org.opencontainers.image.version":  testVersion,
		"org.opencontainers.image.revision": revision(t),
		"org.opencontainers.image.source":   "https://github.com/loadshed/loadshed",
		"org.opencontainers.image.created":  "2026-01-01T00:00:00Z",
	}
	for k, v := range want {
		if cf.Config.Labels[k] != v {
			t.Errorf("%s: label %s = %q, want %q", platform, k, cf.Config.Labels[k], v)
		}
	}
	if !cf.Created.Equal(time.Unix(testCreated, 0)) {
		t.Errorf("%s: created %v, want the commit's time", platform, cf.Created)
	}
}

// checkFiles reads every layer and checks that the image holds the base
// files and the binary, and nothing else: no shell, no package manager.
func checkFiles(t *testing.T, platform string, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	var names []string
	for _, l := range layers {
		for name, data := range readLayer(t, l) {
			files[name] = data
			names = append(names, name)
			if base := filepath.Base(name); base == "sh" || base == "bash" || base == "busybox" ||
				strings.HasPrefix(name, "bin/") || strings.HasPrefix(name, "usr/") || strings.Contains(name, "dpkg") {
				t.Errorf("%s: the image holds %s", platform, name)
			}
		}
	}
	want := make([]string, 0, 1+len(image.BaseFiles()))
	want = append(want, "loadshed-operator")
	for _, f := range image.BaseFiles() {
		want = append(want, f.Path)
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("%s: the layers hold %q, want exactly %q", platform, names, want)
	}
	if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("%s: /etc/passwd names no nonroot user 65532:\n%s", platform, files["etc/passwd"])
	}
	return files
}

func readLayer(t *testing.T, l v1.Layer) map[string][]byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = data
	}
}

// checkBinaryRuns writes the binary taken from the image to disk and runs
// it with --version.
func checkBinaryRuns(t *testing.T, binary []byte) {
	t.Helper()
	if len(binary) == 0 {
		t.Fatal("the image holds no /loadshed-operator")
	}
	path := filepath.Join(t.TempDir(), "loadshed-operator")
	if err := os.WriteFile(path, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		t.Fatalf("/loadshed-operator --version: %v", err)
	}
	want := "loadshed-operator " + testVersion + " (revision " + revision(t) + ", " + runtime.Version() + ", " +
		runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if string(out) != want {
		t.Errorf("/loadshed-operator --version printed %q, want %q", out, want)
	}
}

// checkSBOM checks that an SBOM is CycloneDX JSON describing the main
// module at the build's version, with its dependencies.
func checkSBOM(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var bom struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct{ Name, Version string } `json:"component"`
		} `json:"metadata"`
		Components []struct{ Name, Version string } `json:"components"`
	}
	if err := json.Unmarshal(data, &bom); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	main := bom.Metadata.Component
	if bom.BOMFormat != "CycloneDX" || main.Name != "github.com/loadshed/loadshed" || main.Version != testVersion {
		t.Errorf("%s: %s describing %s %s, want CycloneDX describing github.com/loadshed/loadshed %s",
			path, bom.BOMFormat, main.Name, main.Version, testVersion)
	}
	if !slices.ContainsFunc(bom.Components, func(c struct{ Name, Version string }) bool {
		return c.Name == "sigs.k8s.io/controller-runtime"
	}) {
		t.Errorf("%s: no component sigs.k8s.io/controller-runtime among %d", path, len(bom.Components))
	}
}
