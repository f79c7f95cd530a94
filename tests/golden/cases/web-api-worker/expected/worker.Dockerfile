# Rendered by twinstack for service 'worker'; edit the stack file, not this.
FROM debian:bookworm-20251117-slim
RUN id -u app >/dev/null 2>&1 || useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
RUN mkdir -p /var/lib/worker /var/spool/worker && chown app:app /var/lib/worker /var/spool/worker
VOLUME ["/var/lib/worker"]
VOLUME ["/var/spool/worker"]
USER app
WORKDIR /
CMD ["/bin/sh", "-c", "while true; do date >> /var/lib/worker/beat; sleep 5; done"]
