# The `tidewater` binary in a small image that runs as a non-root user.
#
#   docker build -t tidewater .
#   docker run -p 8080:8080 -v tidewater-data:/var/lib/tidewater tidewater
#
# Two stages: `build` compiles the binary (package tidewater-cli) in release
# with the Rust toolchain; `runtime` is Debian slim with only that binary,
# the configs/ folder and a user of its own. `tidewater run` drains on
# SIGTERM for `shutdown.drain_timeout_ms` (20 s in configs/container.toml),
# so stop it with `docker stop -t 30`.
#
# The base images are build arguments so that a machine without a registry
# can use images made locally (deploy/docker/base-images makes them with
# debootstrap). BINARY_FROM names the image or stage holding the binary at
# /out/tidewater: `build` (the default) compiles it here; the container test
# (tests/deploy.rs) gives an image holding the binary it was built with, so
# that BuildKit skips the compile stage. Needs BuildKit (`docker buildx` or
# DOCKER_BUILDKIT=1): the classic builder builds every stage.

ARG BUILD_IMAGE=docker.io/library/rust:1.88-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
ARG BINARY_FROM=build

# --- build: the release binary -------------------------------------------
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
# --locked: the dependency versions of Cargo.lock, nothing resolved anew.
RUN cargo build --release --locked -p tidewater-cli --bin tidewater \
 && install -D -m 0755 target/release/tidewater /out/tidewater

# --- binary: where the runtime stage takes the binary from ----------------
FROM ${BINARY_FROM} AS binary

# --- runtime: the binary, its configs and a user --------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# The binary links only glibc, libgcc_s and zlib (all in Debian's base);
# ca-certificates for TLS to brokers and stores.
RUN if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update && apt-get install -y --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 tidewater \
 && useradd --system --uid 10001 --gid tidewater --no-create-home \
      --home-dir /var/lib/tidewater --shell /usr/sbin/nologin tidewater \
 && install -d -o tidewater -g tidewater -m 0750 /var/lib/tidewater
COPY --from=binary /out/tidewater /usr/local/bin/tidewater
COPY configs/ /etc/tidewater/

USER 10001:10001
WORKDIR /var/lib/tidewater
VOLUME ["/var/lib/tidewater"]
# The HTTP API (configs/container.toml); a timely cluster also uses its
# `cluster.addresses` ports (2101 in deploy/k8s).
EXPOSE 8080
# GET /healthz answers `ok` while the API serves. The image has no HTTP
# client; bash's /dev/tcp is enough for one request.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${TIDEWATER_HEALTH_PORT:-8080} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && grep -q '^ok' <&3"]
ENTRYPOINT ["/usr/local/bin/tidewater"]
CMD ["run", "--config", "/etc/tidewater/container.toml"]
