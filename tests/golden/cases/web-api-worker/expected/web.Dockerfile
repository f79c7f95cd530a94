# Rendered by twinstack for service 'web'; edit the stack file, not this.
FROM debian:bookworm-20251117-slim
RUN set -eux; apt-get update; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3; rm -rf /var/lib/apt/lists/*
RUN id -u app >/dev/null 2>&1 || useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY rootfs/ /
EXPOSE 8080/tcp
USER app
WORKDIR /srv/www
CMD ["python3", "-m", "http.server", "8080", "--directory", "/srv/www"]
