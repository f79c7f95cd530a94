# Rendered by twinstack for service 'batch'; edit the stack file, not this.
FROM debian@sha256:0b2b5b6a2a3e2f0f6d3b1f3f0b4b2e6d5c4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c
USER root
WORKDIR /
CMD ["/usr/local/bin/batch", "--once"]
