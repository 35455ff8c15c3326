# syntax=docker/dockerfile:1
# Tidewater's container image: multi-stage, a small Debian runtime, non-root.
#
#   docker build -t tidewater .                      # builds the binary inside (needs crates.io)
#   docker build --target prebuilt -t tidewater \    # or COPY a binary built on the host
#     --build-arg BINARY=target/release/tidewater .  # (same glibc: Debian bookworm)
#   docker run -p 8080:8080 -v tidewater-data:/data tidewater
#
# The image serves the HTTP API on 0.0.0.0:8080 (deploy/container.toml),
# keeps the embedded store on /data, reports health from GET /healthz and
# drains on SIGTERM. deploy/k8s/ runs it as an N-process cluster.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- build: the release binary ---------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tidewater-cli \
 && cp target/release/tidewater /usr/local/bin/tidewater

# --- base: what both runtime targets share ---------------------------------
FROM ${RUNTIME_IMAGE} AS base
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tidewater \
 && useradd --system --uid 10001 --gid tidewater --home-dir /data --shell /usr/sbin/nologin tidewater \
 && mkdir -p /data /etc/tidewater \
 && chown tidewater:tidewater /data
COPY deploy/container.toml /etc/tidewater/tidewater.toml
COPY deploy/entrypoint /usr/local/bin/tidewater-entrypoint
COPY deploy/healthcheck /usr/local/bin/tidewater-healthcheck
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 2101
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/tidewater-healthcheck"]
ENTRYPOINT ["/usr/local/bin/tidewater-entrypoint"]

# --- prebuilt: a binary built on the host, copied in ------------------------
FROM base AS prebuilt
ARG BINARY=target/release/tidewater
COPY --chmod=0755 ${BINARY} /usr/local/bin/tidewater

# --- runtime (default): the binary from the build stage ---------------------
FROM base AS runtime
COPY --from=build /usr/local/bin/tidewater /usr/local/bin/tidewater
