#!/usr/bin/env bash
# The one place the build's version comes from; hack/build.sh, the Makefile
# (VERSION, REVISION, SOURCE_DATE_EPOCH) and through them the image, the
# SBOM and the chart take it from here. See docs/release.md.
#
#   hack/version.sh           the version: SemVer with a leading v, no build
#                             metadata (no +), so that a Helm chart can use it
#                             without the v:
#                             - the exact v* tag on HEAD, e.g. v0.1.0;
#                             - else NEXT-dev.<short sha>, e.g. v0.1.0-dev.abc1234;
#                             - either with a .dirty (or -dirty after a bare
#                               tag) suffix when tracked files have changes.
#   hack/version.sh revision  the full commit, with no dirty mark.
#   hack/version.sh created   the commit's time, seconds since the epoch:
#                             the image's timestamps, so a rebuild is identical.
set -euo pipefail

# NEXT is the release being prepared: bump it, with CHANGELOG.md, right after
# tagging a release.
NEXT=v0.1.0

cd "$(dirname "$0")/.."
case "${1:-version}" in
revision) git rev-parse HEAD ;;
created) git log -1 --format=%ct HEAD ;;
version)
	# Untracked files (such as the bin/ symlink of a worktree) do not make
	# the tree dirty: the build reads tracked files only.
	dirty=""
	if [ -n "$(git status --porcelain --untracked-files=no)" ]; then dirty=dirty; fi
	if tag="$(git describe --tags --exact-match --match 'v*' HEAD 2>/dev/null)"; then
		echo "${tag}${dirty:+-$dirty}"
	else
		sha="$(git rev-parse --short=7 HEAD)"
		# A SemVer pre-release identifier made only of digits may not start
		# with 0: such a short sha gets a g in front, as git describe writes.
		if [[ "$sha" =~ ^[0-9]+$ ]]; then sha="g$sha"; fi
		echo "${NEXT}-dev.${sha}${dirty:+.$dirty}"
	fi
	;;
*)
	echo "usage: $0 [version|revision|created]" >&2
	exit 2
	;;
esac
