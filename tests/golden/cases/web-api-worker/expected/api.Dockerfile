# Rendered by twinstack for service 'api'; edit the stack file, not this.
FROM debian:bookworm-20251117-slim
RUN set -eux; apt-get update; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates=20230311 python3; rm -rf /var/lib/apt/lists/*
RUN id -u app >/dev/null 2>&1 || useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY rootfs/ /
RUN chmod 0755 /opt/api/start.sh
RUN mkdir -p /var/lib/api && chown app:app /var/lib/api
VOLUME ["/var/lib/api"]
EXPOSE 8081/tcp
COPY twinstack/secrets-env /usr/local/lib/twinstack/secrets-env
RUN chmod 0755 /usr/local/lib/twinstack/secrets-env
ENTRYPOINT ["/usr/local/lib/twinstack/secrets-env"]
USER app
WORKDIR /opt/api
CMD ["/opt/api/start.sh"]
