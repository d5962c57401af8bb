package image

import (
	"archive/tar"
	"io"
	"io/fs"
	"strings"
	"time"
)

// nonroot is the user and group the image runs as, as in distroless.
const nonroot = 65532

// File is one entry of a layer: a regular file, or a directory when its
// path ends in a slash.
type File struct {
	// Path is relative to /, e.g. "etc/passwd" or "tmp/".
	Path string
	// Mode holds the permission bits (and sticky bit) only.
	Mode fs.FileMode
	// UID and GID own the entry.
	UID, GID int
	// Data is a regular file's content.
	Data []byte
}

// BaseFiles are the base layer's entries: what a static Go binary running
// as a non-root user needs from a filesystem and nothing else, with no
// shell and no package manager. The operator reads no CA file: its
// Prometheus client falls back to roots compiled into the binary
// (golang.org/x/crypto/x509roots/fallback) where the image has none.
func BaseFiles() []File {
	return []File{
		{Path: "etc/", Mode: 0o755},
		{Path: "etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{Path: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "home/", Mode: 0o755},
		{Path: "home/nonroot/", Mode: 0o700, UID: nonroot, GID: nonroot},
		{Path: "tmp/", Mode: 0o777 | fs.ModeSticky},
	}
}

// writeTar writes files as a tar stream whose bytes depend only on files
// and created: every entry has the same time, no user or group names, and
// the order given.
func writeTar(w io.Writer, files []File, created time.Time) error {
	tw := tar.NewWriter(w)
	for _, f := range files {
		hdr := &tar.Header{
			Name:    f.Path,
			Mode:    int64(f.Mode.Perm()),
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: created.UTC().Truncate(time.Second),
			Format:  tar.FormatPAX,
		}
		if f.Mode&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		if strings.HasSuffix(f.Path, "/") {
			hdr.Typeflag = tar.TypeDir
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	return tw.Close()
}
