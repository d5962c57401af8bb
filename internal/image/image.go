// Package image assembles the operator's OCI image without a container
// engine: a base layer the build writes itself (the nonroot user 65532 in
// /etc/passwd and /etc/group, its home, /tmp) and a layer holding the static
// binary at /loadshed-operator, one image per platform, gathered in an
// image index. Everything in it, timestamps included, comes from Options, so
// the same binaries and options give the same digest. See docs/release.md.
package image

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// BinaryPath is where the operator's binary is in the image: the
	// entrypoint, and config/manager's command.
	BinaryPath = "/loadshed-operator"
	// User is the user and group the image runs as: nonroot, as in
	// distroless images.
	User = "65532:65532"
	// Title is the image's org.opencontainers.image.title.
	Title = "loadshed-operator"
	// DefaultSource is the image's org.opencontainers.image.source.
	DefaultSource = "https://github.com/loadshed/loadshed"
)

// The OCI annotation and label keys the image carries.
const (
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
	LabelVersion     = "org.opencontainers.image.version"
	LabelRevision    = "org.opencontainers.image.revision"
	LabelSource      = "org.opencontainers.image.source"
	LabelCreated     = "org.opencontainers.image.created"
)

// Binary is the operator's binary for one platform.
type Binary struct {
	// Platform is the platform it was built for, e.g. linux/arm64.
	Platform v1.Platform
	// Path is the file.
	Path string
}

// Options are what an image is made of.
type Options struct {
	// Binaries holds one binary per platform; the index lists them in this
	// order.
	Binaries []Binary
	// Version is the build's version (hack/version.sh).
	Version string
	// Revision is the git commit built.
	Revision string
	// Source is the repository's address; DefaultSource when empty.
	Source string
	// Created is the time every file, layer, config and label carries: the
	// commit's time, so that a rebuild is identical.
	Created time.Time
}

// Labels returns the image's labels, which are also the annotations of the
// index and of each platform's manifest.
func Labels(opts Options) map[string]string {
	source := opts.Source
	if source == "" {
		source = DefaultSource
	}
	return map[string]string{
		LabelTitle:       Title,
		LabelDescription: "loadshed: a Kubernetes operator that sheds load during API server floods.",
		LabelVersion:     opts.Version,
		LabelRevision:    opts.Revision,
		LabelSource:      source,
		LabelCreated:     opts.Created.UTC().Format(time.RFC3339),
	}
}

// Build assembles the image index: one image per binary, all sharing the
// base layer.
func Build(opts Options) (v1.ImageIndex, error) {
	if len(opts.Binaries) == 0 {
		return nil, fmt.Errorf("no binary to build an image of")
	}
	if opts.Version == "" || opts.Revision == "" {
		return nil, fmt.Errorf("version %q and revision %q must both be set", opts.Version, opts.Revision)
	}
	base, err := layerOf(BaseFiles(), opts.Created)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	labels := Labels(opts)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	seen := map[string]bool{}
	for _, b := range opts.Binaries {
		platform := b.Platform.String()
		if seen[platform] {
			return nil, fmt.Errorf("two binaries for %s", platform)
		}
		seen[platform] = true
		img, err := platformImage(base, b, labels, opts.Created)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", platform, err)
		}
		p := b.Platform
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	idx = mutate.AppendManifests(idx, adds...)
	annotated, ok := mutate.Annotations(idx, labels).(v1.ImageIndex)
	if !ok {
		return nil, fmt.Errorf("annotating the index lost its type")
	}
	return annotated, nil
}

// platformImage is the image of one binary: the base layer, the binary's
// layer and the config that runs it as nonroot.
func platformImage(base v1.Layer, b Binary, labels map[string]string, created time.Time) (v1.Image, error) {
	data, err := os.ReadFile(b.Path)
	if err != nil {
		return nil, err
	}
	bin, err := layerOf([]File{{Path: BinaryPath[1:], Mode: 0o755, Data: data}}, created)
	if err != nil {
		return nil, fmt.Errorf("binary layer: %w", err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: history(created, "the base: nonroot user 65532, its home, /tmp")},
		mutate.Addendum{Layer: bin, History: history(created, "the operator's static binary at "+BinaryPath)})
	if err != nil {
		return nil, err
	}
	img, err = mutate.ConfigFile(img, configFile(img, b.Platform, labels, created))
	if err != nil {
		return nil, err
	}
	annotated, ok := mutate.Annotations(img, labels).(v1.Image)
	if !ok {
		return nil, fmt.Errorf("annotating the image lost its type")
	}
	return annotated, nil
}

func history(created time.Time, what string) v1.History {
	return v1.History{Created: v1.Time{Time: created}, CreatedBy: "loadshed internal/image: " + what}
}

// configFile is img's config (its rootfs and history, as Append computed
// them) with the platform, the entrypoint, the user and the labels.
func configFile(img v1.Image, p v1.Platform, labels map[string]string, created time.Time) *v1.ConfigFile {
	cf, err := img.ConfigFile()
	if err != nil || cf == nil {
		cf = &v1.ConfigFile{}
	} else {
		cf = cf.DeepCopy()
	}
	cf.Created = v1.Time{Time: created}
	cf.Architecture, cf.OS, cf.Variant, cf.OSVersion = p.Architecture, p.OS, p.Variant, p.OSVersion
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		User:       User,
		WorkingDir: "/",
		Labels:     labels,
	}
	return cf
}

// layerOf is a gzipped layer of files, written in the order given.
func layerOf(files []File, created time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	if err := writeTar(&buf, files, created); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
