package krew

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const manifestTemplate = `apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: loadshed
spec:
  version: {{ .TagName }}
  shortDescription: a plugin
  platforms:
  - selector:
      matchLabels:
        os: linux
        arch: amd64
    {{addURIAndSha "https://example.com/{{ .TagName }}/kubectl-loadshed_linux_amd64.tar.gz" .TagName }}
    files:
    - from: kubectl-loadshed
      to: .
    bin: kubectl-loadshed
`

// archive writes a test archive and returns its bytes.
func archive(t *testing.T, modTime time.Time, files ...File) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Archive(&buf, files, modTime); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testFiles(t *testing.T) []File {
	t.Helper()
	dir := t.TempDir()
	bin, readme := filepath.Join(dir, "bin"), filepath.Join(dir, "README.md")
	if err := os.WriteFile(bin, []byte("\x7fELF..."), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readme, []byte("# read me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []File{{Name: "kubectl-loadshed", Path: bin, Mode: 0o755}, {Name: "README.md", Path: readme, Mode: 0o644}}
}

func TestRenderWritesEachArchivesURIAndDigest(t *testing.T) {
	var asked []string
	out, err := Render([]byte(manifestTemplate), "v1.2.3", func(uri string) (string, error) {
		asked = append(asked, uri)
		return strings.Repeat("ab", 32), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "    uri: https://example.com/v1.2.3/kubectl-loadshed_linux_amd64.tar.gz\n    sha256: " + strings.Repeat("ab", 32) + "\n"
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "version: v1.2.3\n") {
		t.Errorf("rendered:\n%s\nwant it to hold:\n%s", out, want)
	}
	if len(asked) != 1 {
		t.Errorf("digests asked for %v", asked)
	}
	p, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate("loadshed"); err != nil {
		t.Error(err)
	}
	if pl := p.Spec.Platforms[0]; pl.OS() != "linux" || pl.Arch() != "amd64" || pl.Bin != "kubectl-loadshed" {
		t.Errorf("platform %+v", pl)
	}
}

func TestRenderFailsWithoutAnArchive(t *testing.T) {
	_, err := Render([]byte(manifestTemplate), "v1.2.3", func(string) (string, error) { return "", errors.New("no such file") })
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("got %v, want the missing archive's error", err)
	}
}

func TestValidateNamesWhatKrewWouldRefuse(t *testing.T) {
	out, err := Render([]byte(manifestTemplate), "1.2.3", func(string) (string, error) { return "not-a-digest", nil })
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Validate("other")
	for _, want := range []string{`metadata.name "loadshed"`, `spec.version "1.2.3"`, `a sha256 ("not-a-digest")`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to say %s", err, want)
		}
	}
	if _, err := Parse([]byte("apiVersion: x\nunknown: 1\n")); err == nil {
		t.Error("a manifest with an unknown field parsed")
	}
}

func TestArchivesAreReproducibleAndChecked(t *testing.T) {
	files := testFiles(t)
	at := time.Unix(1767225600, 0)
	a := archive(t, at, files...)
	if b := archive(t, at, files...); !bytes.Equal(a, b) {
		t.Error("the same files made two different archives")
	}
	got, modes, err := Contents(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if string(got["README.md"]) != "# read me\n" || modes["kubectl-loadshed"] != 0o755 || modes["README.md"] != 0o644 {
		t.Errorf("contents %v, modes %v", got, modes)
	}
	sum := sha256.Sum256(a)
	out, err := Render([]byte(manifestTemplate), "v1.2.3", func(string) (string, error) { return hex.EncodeToString(sum[:]), nil })
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	open := func(string) ([]byte, error) { return a, nil }
	if err := p.Check(open); err != nil {
		t.Errorf("the archive does not match its manifest: %v", err)
	}
	p.Spec.Platforms[0].Files = append(p.Spec.Platforms[0].Files, FileOperation{From: "LICENSE", To: "."})
	if err := p.Check(open); err == nil || !strings.Contains(err.Error(), "has no LICENSE") {
		t.Errorf("a file the archive lacks: %v", err)
	}
	withoutBin := archive(t, at, files[1])
	if err := p.Check(func(string) ([]byte, error) { return withoutBin, nil }); err == nil ||
		!strings.Contains(err.Error(), "sha256") || !strings.Contains(err.Error(), "not executable") {
		t.Errorf("another archive: %v", err)
	}
}

// TestTheTemplateRenders renders the repository's .krew.yaml: a valid
// manifest for linux and darwin on amd64 and arm64, each installing the
// binary and the README.
func TestTheTemplateRenders(t *testing.T) {
	_, here, _, _ := runtime.Caller(0)
	tmpl, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "..", ".krew.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(tmpl, "v0.1.0", func(string) (string, error) { return strings.Repeat("0f", 32), nil })
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate("loadshed"); err != nil {
		t.Fatal(err)
	}
	got := make([]string, 0, len(p.Spec.Platforms))
	for _, pl := range p.Spec.Platforms {
		got = append(got, pl.OS()+"/"+pl.Arch())
		want := "https://github.com/loadshed/loadshed/releases/download/v0.1.0/kubectl-loadshed_" + pl.OS() + "_" + pl.Arch() + ".tar.gz"
		if pl.URI != want || pl.Bin != "kubectl-loadshed" || len(pl.Files) != 2 {
			t.Errorf("platform %+v, want uri %s, bin kubectl-loadshed and two files", pl, want)
		}
	}
	if strings.Join(got, " ") != "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64" {
		t.Errorf("platforms %v", got)
	}
}
