// Package krew packages kubectl loadshed for krew, kubectl's plugin
// manager: the reproducible archive of each platform's binary, and the
// plugin manifest rendered from its template (.krew.yaml at the
// repository's top, in krew-release-bot's form) with each archive's URI
// and sha256. make plugin-dist runs it through cmd/plugin-dist; test/release
// checks what it wrote. docs/release.md says how the plugin is released.
package krew

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/template"
	"time"

	"sigs.k8s.io/yaml"
)

// The manifest's apiVersion and kind, as krew reads them.
const (
	APIVersion = "krew.googlecontainertools.github.com/v1alpha2"
	Kind       = "Plugin"
)

// Plugin is krew's plugin manifest, the fields of it that loadshed's uses
// (https://krew.sigs.k8s.io/docs/developer-guide/plugin-manifest/).
type Plugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec Spec `json:"spec"`
}

// Spec is a plugin's version, its descriptions and its platforms.
type Spec struct {
	Version          string     `json:"version"`
	Homepage         string     `json:"homepage,omitempty"`
	ShortDescription string     `json:"shortDescription"`
	Description      string     `json:"description,omitempty"`
	Caveats          string     `json:"caveats,omitempty"`
	Platforms        []Platform `json:"platforms"`
}

// Platform is where krew downloads the plugin for one os/arch, what it
// installs from the archive, and the binary it runs.
type Platform struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	URI    string          `json:"uri"`
	SHA256 string          `json:"sha256"`
	Files  []FileOperation `json:"files,omitempty"`
	Bin    string          `json:"bin"`
}

// FileOperation copies From, a path in the archive, to To, in the plugin's directory.
type FileOperation struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// OS is the platform's os selector label.
func (p Platform) OS() string { return p.Selector.MatchLabels["os"] }

// Arch is the platform's arch selector label.
func (p Platform) Arch() string { return p.Selector.MatchLabels["arch"] }

// Render renders a krew-release-bot template: {{ .TagName }} is tag, and
// {{ addURIAndSha "URL" .TagName }} writes "uri: URL" and, on the next line
// at the indent krew-release-bot gives it, "sha256: " with the digest
// sha256Of returns for the URL (the URL's own {{ .TagName }} rendered too).
func Render(tmpl []byte, tag string, sha256Of func(uri string) (string, error)) ([]byte, error) {
	values := struct{ TagName string }{tag}
	var failed error
	funcs := template.FuncMap{"addURIAndSha": func(rawURL, tag string) string {
		var uri bytes.Buffer
		t, err := template.New("uri").Parse(rawURL)
		if err == nil {
			err = t.Execute(&uri, struct{ TagName string }{tag})
		}
		sum := ""
		if err == nil {
			sum, err = sha256Of(uri.String())
		}
		if err != nil {
			failed = errors.Join(failed, fmt.Errorf("%s: %w", rawURL, err))
		}
		return fmt.Sprintf("uri: %s\n    sha256: %s", uri.String(), sum)
	}}
	t, err := template.New("manifest").Funcs(funcs).Option("missingkey=error").Parse(string(tmpl))
	if err != nil {
		return nil, fmt.Errorf("parsing the manifest template: %w", err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, values); err != nil {
		return nil, fmt.Errorf("rendering the manifest template: %w", err)
	}
	if failed != nil {
		return nil, failed
	}
	return out.Bytes(), nil
}

// Parse reads a manifest, refusing fields it does not know.
func Parse(b []byte) (*Plugin, error) {
	p := &Plugin{}
	if err := yaml.UnmarshalStrict(b, p); err != nil {
		return nil, fmt.Errorf("reading the plugin manifest: %w", err)
	}
	return p, nil
}

var (
	semver = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	digest = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Validate checks what krew requires of a manifest: its apiVersion, kind
// and name; a version as v-prefixed SemVer; a short description; and for
// each platform an os and arch, an https URI, a sha256 and the binary.
func (p *Plugin) Validate(name string) error {
	var errs []error
	if p.APIVersion != APIVersion || p.Kind != Kind {
		errs = append(errs, fmt.Errorf("apiVersion %q, kind %q: want %s %s", p.APIVersion, p.Kind, APIVersion, Kind))
	}
	if p.Metadata.Name != name {
		errs = append(errs, fmt.Errorf("metadata.name %q, want %q", p.Metadata.Name, name))
	}
	if !semver.MatchString(p.Spec.Version) {
		errs = append(errs, fmt.Errorf("spec.version %q is not a SemVer with a leading v", p.Spec.Version))
	}
	if p.Spec.ShortDescription == "" || len(p.Spec.Platforms) == 0 {
		errs = append(errs, errors.New("spec.shortDescription and spec.platforms are required"))
	}
	seen := map[string]bool{}
	for i, pl := range p.Spec.Platforms {
		at := fmt.Sprintf("spec.platforms[%d] (%s/%s)", i, pl.OS(), pl.Arch())
		switch {
		case pl.OS() == "" || pl.Arch() == "":
			errs = append(errs, fmt.Errorf("%s: its selector needs os and arch labels", at))
		case seen[pl.OS()+"/"+pl.Arch()]:
			errs = append(errs, fmt.Errorf("%s: a second platform for it", at))
		case !strings.HasPrefix(pl.URI, "https://") || !digest.MatchString(pl.SHA256) || pl.Bin == "":
			errs = append(errs, fmt.Errorf("%s: needs an https uri (%q), a sha256 (%q) and a bin (%q)", at, pl.URI, pl.SHA256, pl.Bin))
		}
		seen[pl.OS()+"/"+pl.Arch()] = true
	}
	return errors.Join(errs...)
}

// File is one file of an archive: Name in the archive, read from Path.
type File struct {
	Name, Path string
	// Mode is its permissions: 0o755 for the binary, 0o644 for the rest.
	Mode int64
}

// Archive writes a .tar.gz of files, in order, the same bytes for the same
// files: every entry owned by root and dated modTime, and no name or time
// in the gzip header.
func Archive(w io.Writer, files []File, modTime time.Time) error {
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	for _, f := range files {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.Name, Mode: f.Mode, Size: int64(len(b)),
			ModTime: modTime.UTC(), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// Contents reads a .tar.gz: each regular file's name and bytes, and its mode.
func Contents(r io.Reader) (map[string][]byte, map[string]int64, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, nil, err
	}
	tr := tar.NewReader(zr)
	files, modes := map[string][]byte{}, map[string]int64{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, modes, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, err
		}
		files[hdr.Name], modes[hdr.Name] = b, hdr.Mode
	}
}

// Check checks a rendered manifest against its archives: each platform's
// archive (open returns it, by URI) has the sha256 the manifest names,
// holds every file the manifest installs from it, and its bin executable.
func (p *Plugin) Check(open func(uri string) ([]byte, error)) error {
	var errs []error
	for _, pl := range p.Spec.Platforms {
		b, err := open(pl.URI)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != pl.SHA256 {
			errs = append(errs, fmt.Errorf("%s: sha256 %x, the manifest says %s", pl.URI, sum, pl.SHA256))
		}
		files, modes, err := Contents(bytes.NewReader(b))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", pl.URI, err))
			continue
		}
		for _, op := range pl.Files {
			if _, ok := files[op.From]; !ok {
				errs = append(errs, fmt.Errorf("%s has no %s, which the manifest installs", pl.URI, op.From))
			}
		}
		if modes[pl.Bin]&0o111 == 0 {
			errs = append(errs, fmt.Errorf("%s: its bin %s is missing or not executable", pl.URI, pl.Bin))
		}
	}
	return errors.Join(errs...)
}

// SHA256 is the hex sha256 of a file.
func SHA256(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
