// Command loadshed-plugin-dist packages kubectl loadshed for krew from
// binaries already built (make plugin-dist builds them with hack/build.sh):
// a reproducible dist/kubectl-loadshed_<os>_<arch>.tar.gz per platform,
// holding the binary and the files given, and dist/loadshed.yaml, the krew
// manifest rendered from its template with each archive's sha256 (see
// internal/krew). It only turns flags into internal/krew's calls.
//
//	loadshed-plugin-dist --template .krew.yaml --tag v0.1.0 --dist dist --modtime EPOCH --file README.md \
//	    --binary linux/amd64=dist/bin/linux_amd64/kubectl-loadshed --binary darwin/arm64=...
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/loadshed/loadshed/internal/krew"
	"github.com/loadshed/loadshed/internal/version"
)

// plugin is the plugin's name (kubectl loadshed) and its binary's.
const (
	plugin = "loadshed"
	binary = "kubectl-loadshed"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	version.AddFlag(flag.CommandLine, "loadshed-plugin-dist")
	var (
		tmpl, tag, dist string
		modTime         int64
		files, binaries listFlag
	)
	flag.StringVar(&tmpl, "template", ".krew.yaml", "The krew manifest's template, in krew-release-bot's form.")
	flag.StringVar(&tag, "tag", "", "The release's tag, e.g. v0.1.0 (the manifest's version).")
	flag.StringVar(&dist, "dist", "dist", "Where to write the archives and the manifest.")
	flag.Int64Var(&modTime, "modtime", 0, "The time of every file in the archives, in seconds since the epoch.")
	flag.Var(&files, "file", "A file to put in every archive beside the binary (repeatable), e.g. README.md.")
	flag.Var(&binaries, "binary", "A platform's binary, as os/arch=path (repeatable).")
	flag.Parse()
	if err := run(tmpl, tag, dist, time.Unix(modTime, 0), files, binaries); err != nil {
		fmt.Fprintln(os.Stderr, "loadshed-plugin-dist:", err)
		os.Exit(1)
	}
}

func run(tmpl, tag, dist string, modTime time.Time, files, binaries []string) error {
	if tag == "" || len(binaries) == 0 {
		return errors.New("--tag and at least one --binary are required")
	}
	for _, b := range binaries {
		platform, bin, ok := strings.Cut(b, "=")
		osName, arch, ok2 := strings.Cut(platform, "/")
		if !ok || !ok2 {
			return fmt.Errorf("--binary %q: want os/arch=path", b)
		}
		contents := []krew.File{{Name: binary, Path: bin, Mode: 0o755}}
		for _, f := range files {
			contents = append(contents, krew.File{Name: filepath.Base(f), Path: f, Mode: 0o644})
		}
		archive := filepath.Join(dist, fmt.Sprintf("%s_%s_%s.tar.gz", binary, osName, arch))
		if err := writeArchive(archive, contents, modTime); err != nil {
			return err
		}
		fmt.Println("wrote", archive)
	}
	t, err := os.ReadFile(tmpl)
	if err != nil {
		return err
	}
	// Each URI names its archive by its last element, as built into dist.
	local := func(uri string) string { return filepath.Join(dist, path.Base(uri)) }
	manifest, err := krew.Render(t, tag, func(uri string) (string, error) { return krew.SHA256(local(uri)) })
	if err != nil {
		return err
	}
	p, err := krew.Parse(manifest)
	if err != nil {
		return err
	}
	read := func(uri string) ([]byte, error) { return os.ReadFile(local(uri)) }
	if err := errors.Join(p.Validate(plugin), p.Check(read)); err != nil {
		return fmt.Errorf("the rendered manifest: %w", err)
	}
	out := filepath.Join(dist, plugin+".yaml")
	if err := os.WriteFile(out, manifest, 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", out)
	return nil
}

func writeArchive(name string, files []krew.File, modTime time.Time) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := krew.Archive(f, files, modTime); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return f.Close()
}
