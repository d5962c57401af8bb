# syntax=docker/dockerfile:1
# Build the loadshed operator, for people who have Docker. `make image` builds
# the same binary, with the same flags from the same script (hack/build.sh),
# into an OCI image without a container engine (docs/release.md);
# `make docker-build` passes this file the same VERSION and REVISION.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
# The version and commit stamped into the binary (hack/version.sh prints
# them; there is no .git in the build context to compute them from).
ARG VERSION=dev
ARG REVISION=unknown

WORKDIR /workspace
# Dependencies first, in their own layer, so that a source change does not
# download them again.
COPY go.mod go.mod
COPY go.sum go.sum
RUN go mod download

# The sources the manager is built from, and the script holding the flags.
COPY hack/build.sh hack/build.sh
COPY cmd/ cmd/
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/

# GOARCH has no default so that the image matches the platform it is built for
# (docker buildx --platform sets TARGETOS and TARGETARCH).
RUN GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} VERSION=${VERSION} REVISION=${REVISION} \
    hack/build.sh -o loadshed-operator ./cmd/manager

# A static, distroless, non-root image: nothing in it but the binary (and
# distroless's CA roots, /etc/passwd and /tmp).
# See https://github.com/GoogleContainerTools/distroless.
FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="loadshed-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/loadshed/loadshed"
WORKDIR /
COPY --from=builder /workspace/loadshed-operator /loadshed-operator
USER 65532:65532

ENTRYPOINT ["/loadshed-operator"]
