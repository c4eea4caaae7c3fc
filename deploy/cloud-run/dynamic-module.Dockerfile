# Envoy + bcsp-guard as an Envoy dynamic module (the native build) for Cloud Run: the option to
# deploy/cloud-run/Dockerfile's Wasm module. Build context: the repository root; the first stage
# compiles the module, so no `make release` is needed.
#
#   docker build --platform linux/amd64 -f deploy/cloud-run/dynamic-module.Dockerfile -t "$IMAGE" .
#
# --platform linux/amd64: Cloud Run runs x86-64 images (on an ARM laptop the build stage then
# runs emulated: slow, but the module comes out x86-64).
#
# Dynamic modules need Envoy 1.40 exactly (docs/DYNAMIC_MODULE.md); the release matches the one
# the test suite validates deploy/cloud-run/envoy-dynamic-module.yaml with.
ARG RUST_IMAGE=rust:1-slim-bookworm

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Cargo loads the whole workspace even to build one member (see deploy/compose/Dockerfile).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY emulators ./emulators
COPY tools ./tools
COPY hosts ./hosts
RUN cargo build --release --locked -p bcsp-guard-envoy

FROM envoyproxy/envoy:v1.40.0
# Envoy loads lib<dynamic_module_config.name>.so from this directory.
ENV ENVOY_DYNAMIC_MODULES_SEARCH_PATH=/usr/local/lib/bcsp-guard
COPY --from=build /src/target/release/libbcsp_guard_envoy.so /usr/local/lib/bcsp-guard/libbcsp_guard_envoy.so
COPY deploy/cloud-run/envoy-dynamic-module.yaml /etc/envoy/envoy.yaml

# As deploy/cloud-run/Dockerfile: unprivileged, port 8080, one worker per vCPU (service.yaml).
USER envoy
EXPOSE 8080
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml", "--concurrency", "1", "--disable-hot-restart", "--log-level", "info"]
