# One image, every role: feed-api, feed-worker and fanout-operator. Choose
# the role with the command, e.g. `feed-worker`.
# Builds without a database: sqlx reads the committed .sqlx/ query data.

FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p feed-api -p feed-worker -p fanout-operator --bins \
    && mkdir -p /out \
    && cp target/release/feed-api target/release/feed-worker target/release/fanout-operator /out/

# glibc and CA certificates, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
ENV FANOUT_LOG_FORMAT=json \
    FANOUT_HTTP_ADDR=0.0.0.0:8080 \
    FANOUT_WORKER_HTTP_ADDR=0.0.0.0:9091
EXPOSE 8080 9091
USER 65532:65532
ENTRYPOINT []
CMD ["/usr/local/bin/feed-api"]
