package image_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/loadshed/loadshed/internal/image"
)

var created = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// options are an image's options with two small files standing for the
// binaries.
func options(t *testing.T) image.Options {
	t.Helper()
	dir := t.TempDir()
	platforms := []string{"linux/amd64", "linux/arm64"}
	bins := make([]image.Binary, 0, len(platforms))
	for _, p := range platforms {
		path := filepath.Join(dir, filepath.Base(p))
		if err := os.WriteFile(path, []byte("binary for "+p), 0o755); err != nil {
			t.Fatal(err)
		}
		platform, err := v1.ParsePlatform(p)
		if err != nil {
			t.Fatal(err)
		}
		bins = append(bins, image.Binary{Platform: *platform, Path: path})
	}
	return image.Options{Binaries: bins, Version: "v1.2.3", Revision: "0123abc", Created: created}
}

func build(t *testing.T, opts image.Options) v1.ImageIndex {
	t.Helper()
	idx, err := image.Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func digest(t *testing.T, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestEachPlatformRunsItsBinaryAsNonroot(t *testing.T) {
	opts := options(t)
	idx := build(t, opts)
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 2 || m.Annotations[image.LabelVersion] != "v1.2.3" {
		t.Fatalf("index: %d manifests, annotations %v", len(m.Manifests), m.Annotations)
	}
	for i, desc := range m.Manifests {
		if got, want := desc.Platform.String(), opts.Binaries[i].Platform.String(); got != want {
			t.Errorf("manifest %d: platform %s, want %s", i, got, want)
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS+"/"+cf.Architecture != desc.Platform.String() || cf.Config.User != image.User ||
			len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != image.BinaryPath || !cf.Created.Equal(created) {
			t.Errorf("%s: config %s/%s, user %q, entrypoint %q, created %v", desc.Platform, cf.OS, cf.Architecture,
				cf.Config.User, cf.Config.Entrypoint, cf.Created)
		}
		for k, v := range map[string]string{image.LabelVersion: "v1.2.3", image.LabelRevision: "0123abc",
			image.LabelSource: image.DefaultSource, image.LabelCreated: "2026-11-30T12:00:00Z", image.LabelTitle: image.Title} {
			if cf.Config.Labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q", desc.Platform, k, cf.Config.Labels[k], v)
			}
		}
		files := filesOf(t, img)
		if got, want := string(files["loadshed-operator"].data), "binary for "+desc.Platform.String(); got != want {
			t.Errorf("%s: /loadshed-operator holds %q, want %q", desc.Platform, got, want)
		}
		for path, mode := range map[string]int64{"loadshed-operator": 0o755, "tmp/": 0o1777, "etc/passwd": 0o644} {
			if files[path].mode != mode {
				t.Errorf("%s: %s has mode %o, want %o", desc.Platform, path, files[path].mode, mode)
			}
		}
	}
}

type entry struct {
	mode int64
	data []byte
}

// filesOf reads every layer of img, in order, the later entries winning.
func filesOf(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]entry{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[hdr.Name] = entry{mode: hdr.Mode, data: data}
		}
		_ = rc.Close()
	}
	return files
}

func TestTheSameInputsGiveTheSameDigest(t *testing.T) {
	opts := options(t)
	first, again := digest(t, build(t, opts)), digest(t, build(t, opts))
	if first != again {
		t.Errorf("two builds of the same inputs: %s and %s", first, again)
	}
	opts.Created = opts.Created.Add(time.Second)
	if later := digest(t, build(t, opts)); later == first {
		t.Errorf("a build at another time has the same digest %s", later)
	}
	opts = options(t)
	opts.Version = "v1.2.4"
	if other := digest(t, build(t, opts)); other == first {
		t.Errorf("a build of another version has the same digest %s", other)
	}
}

func TestAWrittenLayoutReadsBackAsTheSameIndex(t *testing.T) {
	idx := build(t, options(t))
	dir := filepath.Join(t.TempDir(), "image")
	if err := image.Write(dir, idx, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	back, err := image.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := digest(t, back), digest(t, idx); got != want {
		t.Errorf("read back %s, wrote %s", got, want)
	}
	if err := image.Write(dir, idx, "v1.2.3"); err == nil {
		t.Error("writing over a layout that is there succeeded")
	}
}

func TestBuildRefusesWhatWouldMakeABadImage(t *testing.T) {
	for name, change := range map[string]func(*image.Options){
		"no binary":          func(o *image.Options) { o.Binaries = nil },
		"no version":         func(o *image.Options) { o.Version = "" },
		"no revision":        func(o *image.Options) { o.Revision = "" },
		"twice one platform": func(o *image.Options) { o.Binaries[1].Platform = o.Binaries[0].Platform },
		"a missing binary":   func(o *image.Options) { o.Binaries[0].Path += ".missing" },
	} {
		opts := options(t)
		change(&opts)
		if _, err := image.Build(opts); err == nil {
			t.Errorf("%s: built", name)
		}
	}
}

func TestPushSendsTheIndexAndEveryPlatform(t *testing.T) {
	idx := build(t, options(t))
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ref := u.Host + "/loadshed/loadshed:v1.2.3"
	ctx := context.Background()
	pushed, err := image.Push(ctx, idx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pushed.DigestStr(), digest(t, idx).String(); got != want {
		t.Errorf("pushed %s, want %s", got, want)
	}
	remoteIdx, err := remote.Index(pushed, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := digest(t, remoteIdx), digest(t, idx); got != want {
		t.Errorf("the registry holds %s, want %s", got, want)
	}
	arm, err := remote.Image(pushed, remote.WithContext(ctx), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(filesOf(t, arm)["loadshed-operator"].data); got != "binary for linux/arm64" {
		t.Errorf("the registry's linux/arm64 image has /loadshed-operator %q", got)
	}
}
