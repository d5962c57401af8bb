// Command loadshed-image builds the operator's OCI image from binaries
// already built (make image builds them with hack/build.sh) into an OCI
// layout directory, and pushes such a directory to a registry. It only
// turns flags into internal/image's options.
//
//	loadshed-image build --out dist/image --version v0.1.0 --revision SHA --created EPOCH \
//	    --binary linux/amd64=dist/bin/linux_amd64/loadshed-operator --binary linux/arm64=...
//	loadshed-image push --from dist/image --to ghcr.io/loadshed/loadshed:v0.1.0
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/loadshed/loadshed/internal/image"
	"github.com/loadshed/loadshed/internal/version"
)

func main() {
	version.AddFlag(flag.CommandLine, "loadshed-image")
	flag.Usage = func() {
		_, _ = fmt.Fprintln(flag.CommandLine.Output(),
			"usage: loadshed-image build|push [flags] (-h after either lists its flags)")
	}
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	var err error
	switch flag.Arg(0) {
	case "build":
		err = build(flag.Args()[1:])
	case "push":
		err = push(ctx, flag.Args()[1:])
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadshed-image:", err)
		os.Exit(1)
	}
}

func build(args []string) error {
	var (
		opts    image.Options
		out     string
		created int64
	)
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	fs.StringVar(&out, "out", "dist/image", "The OCI layout directory to write; must not exist or be empty.")
	fs.StringVar(&opts.Version, "version", "", "The version (hack/version.sh).")
	fs.StringVar(&opts.Revision, "revision", "", "The git commit (hack/version.sh revision).")
	fs.StringVar(&opts.Source, "source", image.DefaultSource,
		"The repository, for the org.opencontainers.image.source label.")
	fs.Int64Var(&created, "created", 0,
		"Seconds since the epoch every timestamp of the image carries (hack/version.sh created).")
	fs.Func("binary",
		"PLATFORM=PATH of a binary, e.g. linux/arm64=dist/bin/linux_arm64/loadshed-operator; repeat per platform.",
		func(s string) error {
			b, err := parseBinary(s)
			opts.Binaries = append(opts.Binaries, b)
			return err
		})
	_ = fs.Parse(args)
	opts.Created = time.Unix(created, 0).UTC()
	idx, err := image.Build(opts)
	if err != nil {
		return err
	}
	if err := image.Write(out, idx, opts.Version); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: %s, %d platforms, index %s\n", out, opts.Version, len(opts.Binaries), d)
	return nil
}

func parseBinary(s string) (image.Binary, error) {
	platform, path, ok := strings.Cut(s, "=")
	if !ok || path == "" {
		return image.Binary{}, errors.New("want PLATFORM=PATH")
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		return image.Binary{}, err
	}
	return image.Binary{Platform: *p, Path: path}, nil
}

func push(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	from := fs.String("from", "dist/image", "The OCI layout directory `build` wrote.")
	to := fs.String("to", "", "The reference to push to, e.g. ghcr.io/loadshed/loadshed:v0.1.0.")
	_ = fs.Parse(args)
	if *to == "" {
		return errors.New("push: --to is required")
	}
	idx, err := image.Read(*from)
	if err != nil {
		return fmt.Errorf("reading %s (run make image first): %w", *from, err)
	}
	d, err := image.Push(ctx, idx, *to)
	if err != nil {
		return err
	}
	fmt.Printf("pushed %s to %s (%s)\n", *from, *to, d)
	return nil
}
