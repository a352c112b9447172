# The serving image, for people who have Docker:
#
#   docker build -t modelops-serve .
#   docker run --rm -p 8080:8080 modelops-serve
#
# CI and releases use `deployer package` instead (no daemon, reproducible
# digests, lineage annotations; see deployer/README.md), which lays the image
# out the same way: serve at /usr/local/bin/serve, each model's model.toml
# and latest version under /models, user 65532 (nonroot), port 8080, SIGTERM
# to stop. The difference is the base: here distroless/cc (glibc, libgcc_s,
# CA bundle, the nonroot user) plus the zlib serve links; `deployer package`
# copies exactly the libraries `ldd` lists from the build host's Debian
# packages. This file is not built in CI (no Docker engine there).

# Debian 12, like the build hosts, so glibc matches distroless/cc-debian12;
# the toolchain the project is built and tested with here.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p serve --bin serve

# What the server reads, nothing else: no test sets, no training data.
FROM debian:bookworm-slim AS models
COPY models /src/models
RUN set -eu; mkdir /models; cd /src/models; \
    for model in iris wine digits; do \
      latest=$(ls "$model" | grep -E '^[0-9]+$' | sort -n | tail -n1); \
      mkdir -p "/models/$model/$latest"; \
      cp "$model/model.toml" "/models/$model/"; \
      cp "$model/$latest/model.onnx" "/models/$model/$latest/"; \
    done

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1
COPY --from=build /src/target/release/serve /usr/local/bin/serve
COPY --from=models /models /models
# The same settings `deployer package` writes into the image config.
ENV PATH=/usr/local/bin \
    MODELOPS_HOST=0.0.0.0 \
    MODELOPS_PORT=8080 \
    MODELOPS_MODELS=/models \
    MODELOPS_TELEMETRY=off
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/serve"]
