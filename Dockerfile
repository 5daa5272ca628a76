# The pdnd-gateway image: built from source, run without a shell as a non-root user.
#
#   docker build -t pdnd-gateway .
#   docker run --read-only -v /srv/pdnd-gateway:/var/lib/pdnd-gateway \
#     -v /etc/pdnd-gateway:/etc/pdnd-gateway:ro -e PDNDGW_AUDIT__HMAC_SECRET=... pdnd-gateway
#
# Runtime contract (see docs/operations.md): the configuration at $PDNDGW_CONFIG, key files where
# it names them (mounted read-only, 0400, or 0440 with server.allow_group_readable_keys), SQLite
# files, if any, under /var/lib/pdnd-gateway (the only path the process writes; mount a volume).
# The working directory stays untouched, so the root file system can be read-only.
# tests/scripts/unprivileged.sh proves these assumptions on the release binary without a
# container engine.

# --- build -------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
# josekit links the system OpenSSL 3 (libssl3 is in the runtime image below).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin pdnd-gateway \
 && install -D -m 0755 target/release/pdnd-gateway /out/usr/local/bin/pdnd-gateway \
 && install -d -m 0750 /out/var/lib/pdnd-gateway

# --- runtime -----------------------------------------------------------------------------------
# distroless cc: glibc, libgcc, libssl3, CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/pdnd-gateway /usr/local/bin/pdnd-gateway
COPY --from=build --chown=65532:65532 /out/var/lib/pdnd-gateway /var/lib/pdnd-gateway
USER 65532:65532
WORKDIR /
ENV PDNDGW_CONFIG=/etc/pdnd-gateway/config/gateway.toml
# Public e-services, internal listener (fruizioni, /status, /livez, /readyz): bind them to
# 0.0.0.0 in the configuration (the internal one with TLS or a confining NetworkPolicy).
EXPOSE 8080 8081
VOLUME ["/var/lib/pdnd-gateway"]
ENTRYPOINT ["/usr/local/bin/pdnd-gateway"]
CMD ["serve"]
