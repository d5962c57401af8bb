# syntax=docker/dockerfile:1
# Build the loadshed operator.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH

WORKDIR /workspace
# Dependencies first, in their own layer, so that a source change does not
# download them again.
COPY go.mod go.mod
COPY go.sum go.sum
RUN go mod download

# The sources the manager is built from.
COPY cmd/ cmd/
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/

# GOARCH has no default so that the image matches the platform it is built for
# (docker buildx --platform sets TARGETOS and TARGETARCH).
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o loadshed-operator ./cmd/manager

# A static, distroless, non-root image: nothing in it but the binary.
# See https://github.com/GoogleContainerTools/distroless.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/loadshed-operator .
USER 65532:65532

ENTRYPOINT ["/loadshed-operator"]
