package release_test

import (
	"bytes"
	"debug/elf"
	"debug/macho"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/loadshed/loadshed/internal/krew"
)

// makePluginDist runs `make plugin-dist` with its output under dist, as a
// release would, and returns the manifest it wrote, parsed.
func makePluginDist(t *testing.T, dist string) *krew.Plugin {
	t.Helper()
	run(t, nil, "make", "-s", "plugin-dist", "DIST="+dist, "VERSION="+testVersion, "REVISION="+revision(t),
		"SOURCE_DATE_EPOCH="+itoa(testCreated))
	b, err := os.ReadFile(filepath.Join(dist, "loadshed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := krew.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMakePluginDistWritesTheArchivesItsManifestNames builds the kubectl
// plugin's krew archives as `make plugin-dist` does, parses the manifest it
// rendered, and checks it against them: a valid krew manifest at the
// build's version, for linux and darwin on amd64 and arm64, each URI naming
// the release asset of the archive beside it, whose sha256 it has; each
// archive holding the README and an executable kubectl-loadshed built for
// its platform; this machine's runs; a second build is the same bytes.
func TestMakePluginDistWritesTheArchivesItsManifestNames(t *testing.T) {
	dist := t.TempDir()
	p := makePluginDist(t, dist)
	if err := p.Validate("loadshed"); err != nil {
		t.Fatal(err)
	}
	if p.Spec.Version != testVersion {
		t.Errorf("version %q, want %q", p.Spec.Version, testVersion)
	}
	readme, err := os.ReadFile(filepath.Join(root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	platforms := make([]string, 0, len(p.Spec.Platforms))
	for _, pl := range p.Spec.Platforms {
		platform := pl.OS() + "/" + pl.Arch()
		platforms = append(platforms, platform)
		asset := "kubectl-loadshed_" + pl.OS() + "_" + pl.Arch() + ".tar.gz"
		if want := "https://github.com/loadshed/loadshed/releases/download/" + testVersion + "/" + asset; pl.URI != want {
			t.Errorf("%s: uri %s, want %s", platform, pl.URI, want)
		}
		b, err := os.ReadFile(filepath.Join(dist, asset))
		if err != nil {
			t.Fatal(err)
		}
		files, _, err := krew.Contents(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(files["README.md"], readme) {
			t.Errorf("%s: the archive's README.md is not the repository's", platform)
		}
		checkBuiltFor(t, platform, files[pl.Bin])
		if platform == runtime.GOOS+"/"+runtime.GOARCH {
			checkPluginRuns(t, files[pl.Bin])
		}
	}
	local := func(uri string) ([]byte, error) { return os.ReadFile(filepath.Join(dist, path.Base(uri))) }
	if err := p.Check(local); err != nil {
		t.Error(err)
	}
	if got := strings.Join(platforms, " "); got != "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64" {
		t.Errorf("the manifest names %s", got)
	}
	again := makePluginDist(t, t.TempDir())
	for i, pl := range again.Spec.Platforms {
		if pl.SHA256 != p.Spec.Platforms[i].SHA256 {
			t.Errorf("two builds of the same commit differ: %s and %s", pl.SHA256, p.Spec.Platforms[i].SHA256)
		}
	}
}

// checkBuiltFor checks that a binary is an executable for platform, from
// its header: ELF for linux, Mach-O for darwin, and the architecture.
func checkBuiltFor(t *testing.T, platform string, binary []byte) {
	t.Helper()
	r := bytes.NewReader(binary)
	got := "unknown"
	if f, err := elf.NewFile(r); err == nil {
		got = "linux/" + map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64"}[f.Machine]
	} else if f, err := macho.NewFile(r); err == nil {
		got = "darwin/" + map[macho.Cpu]string{macho.CpuAmd64: "amd64", macho.CpuArm64: "arm64"}[f.Cpu]
	}
	if got != platform {
		t.Errorf("the archive for %s holds a binary for %s", platform, got)
	}
}

// checkPluginRuns runs this machine's plugin with --version.
func checkPluginRuns(t *testing.T, binary []byte) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kubectl-loadshed")
	if err := os.WriteFile(bin, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").Output()
	want := "kubectl-loadshed " + testVersion + " (revision " + revision(t) + ", " + runtime.Version() + ", " +
		runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if err != nil || string(out) != want {
		t.Errorf("kubectl-loadshed --version printed %q (%v), want %q", out, err, want)
	}
}
