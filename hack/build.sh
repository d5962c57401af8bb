#!/usr/bin/env bash
# The one place the go build flags of loadshed's binaries are defined: make
# build, make image (both platforms) and the Dockerfile run this script, and
# test/release checks they do.
#
#   [GOOS=linux GOARCH=arm64] [VERSION=v..] [REVISION=sha] hack/build.sh -o OUT PACKAGE...
#
# VERSION and REVISION default to hack/version.sh's (the Dockerfile, which has
# no .git, passes them as build arguments). The binary is static
# (CGO_ENABLED=0), has no paths of the build machine (-trimpath) and no VCS
# stamp (-buildvcs=false: the Docker build has no .git, and both builds must
# make the same bytes); -s -w drop the symbol table and DWARF; -X stamps
# internal/version, which --version and loadshed_build_info report.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="${VERSION:-$("$root/hack/version.sh")}"
REVISION="${REVISION:-$("$root/hack/version.sh" revision)}"
pkg=github.com/loadshed/loadshed/internal/version

export CGO_ENABLED=0
exec go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X ${pkg}.Version=${VERSION} -X ${pkg}.Revision=${REVISION}" "$@"
