# gpupool's image: built with every cloud backend, run from distroless as
# non-root. Not built in this repository's CI (no container engine there).
#   docker build --build-arg VERSION=$(git describe --tags --always) -t gpupool .
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
ARG FEATURES=aws,gcp,azure
# protoc comes from the protoc-bin-vendored crate: nothing to install.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --features "${FEATURES}" \
    && cp target/release/gpupool /gpupool

# glibc and CA certificates only; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="gpupool" \
      org.opencontainers.image.description="A cluster-autoscaler externalgrpc cloud provider for GPU node pools" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /gpupool /usr/local/bin/gpupool
USER 65532:65532
# gRPC for CA, operations (/healthz, /readyz, /metrics), interruption webhook.
EXPOSE 8086 8087 8088
ENTRYPOINT ["/usr/local/bin/gpupool"]
CMD ["serve", "--config", "/etc/gpupool/config.yaml"]
