# syntax=docker/dockerfile:1
# caas-operator: a static (musl) binary in a minimal, non-root image.
#   docker build -t caas-operator .
# Multi-arch (amd64, arm64; what .github/workflows/release.yml does on tags):
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/caas-operator:TAG --push .
# The build stage runs on each target platform, so it builds for its own `uname -m`.

FROM rust:1.95-bookworm AS build
# musl-tools: ring's C/assembly parts for the static musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY src src
COPY crds crds
COPY testbed testbed
COPY xtask xtask
RUN target="$(uname -m)-unknown-linux-musl" \
 && cargo build --release --locked --target "$target" --bin caas-operator \
 && cp "target/$target/release/caas-operator" /caas-operator

# distroless/static: CA certificates, /etc/passwd with the nonroot user, nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /caas-operator /usr/local/bin/caas-operator
USER 65532:65532
EXPOSE 8089 9090
ENTRYPOINT ["/usr/local/bin/caas-operator"]
CMD ["run"]
