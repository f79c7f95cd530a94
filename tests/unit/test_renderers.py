"""Renderer details that the golden files alone would not explain."""

from __future__ import annotations

import http.server
import subprocess
import threading
from typing import Any

from components import renderers
from components.spec import ServiceSpec

from .helpers import parse_env_file


def service(**build: Any) -> ServiceSpec:
    return ServiceSpec.model_validate({"name": "svc", "build": {"command": ["/bin/true"], **build}})


def exec_start(svc: ServiceSpec) -> str:
    unit = renderers.render_systemd_unit(svc)
    return next(line for line in unit.splitlines() if line.startswith("ExecStart="))


def test_exec_start_escapes_systemd_specifiers_and_variables() -> None:
    """systemd expands `%x` specifiers and `$VAR` in ExecStart= even inside quotes
    (`%%` and `$$` are the literal forms), while Docker's exec-form CMD passes the
    arguments verbatim. The same command must reach the process unchanged in both."""
    svc = service(command=["/bin/sh", "-c", "date +%s > /tmp/t; echo $HOME $$"])
    line = exec_start(svc)
    assert "+%%s" in line, line
    assert "$$HOME" in line and "$$$$" in line, line


def test_env_file_round_trips_quotes_and_backslashes() -> None:
    env = {"A": 'say "hi"', "B": "back\\slash", "C": "", "D": "x=y; z"}
    svc = service(environment=env)
    text = renderers.render_env_file(svc, {})
    assert parse_env_file(text) == env
    assert text.splitlines() == [
        f"{k}={renderers.env_file_quote(v)}" for k, v in sorted(env.items())
    ]


def test_secrets_follow_plain_variables_in_both_renderings() -> None:
    svc = service(environment={"Z": "1"}, secrets={"A_SECRET": "key"})
    values = renderers.secret_placeholders(svc)
    assert values == {"A_SECRET": "[secret:key]"}
    assert renderers.env_pairs(svc, values) == [("Z", "1"), ("A_SECRET", "[secret:key]")]


def test_health_probe_is_the_vm_health_script() -> None:
    svc = ServiceSpec.model_validate(
        {
            "name": "svc",
            "build": {"command": ["/bin/true"]},
            "ports": [{"name": "http", "port": 8080}],
            "healthCheck": {"http": {"path": "/ok", "port": "http"}, "timeoutS": 2},
        }
    )
    probe = renderers.health_probe(svc)
    assert probe is not None
    assert probe[:3] == ["CMD", "/bin/bash", "-c"]
    assert probe[3] == renderers.health_script(svc)
    assert "/dev/tcp/127.0.0.1/8080" in probe[3]
    ud = renderers.render_cloud_init(svc, hostname="h", secret_values={})
    assert probe[3] in ud


def test_http_probe_asks_for_the_spec_path_on_loopback() -> None:
    """The rendered probe, run by bash against a loopback server, requests exactly the
    spec's path (query and percent-escapes included) and passes only on a 2xx answer."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200 if self.path.startswith("/ok") else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        results = {}
        for path in ("/ok?x=1&y=$(id)%20z", "/missing"):
            svc = ServiceSpec.model_validate(
                {
                    "name": "svc",
                    "build": {"command": ["/bin/true"]},
                    "ports": [{"name": "http", "port": port}],
                    "healthCheck": {"http": {"path": path, "port": "http"}, "timeoutS": 5},
                }
            )
            script = renderers.health_script(svc)
            assert script is not None
            results[path] = subprocess.run(["bash", "-c", script], timeout=30).returncode
    finally:
        server.shutdown()
    assert seen == ["/ok?x=1&y=$(id)%20z", "/missing"]
    assert results == {"/ok?x=1&y=$(id)%20z": 0, "/missing": 1}


def test_context_digest_changes_with_content() -> None:
    a = renderers.render_build_context(service())
    b = renderers.render_build_context(service(packages=["curl"]))
    assert renderers.context_digest(a) != renderers.context_digest(b)
    assert renderers.context_digest(a) == renderers.context_digest(dict(reversed(a.items())))


def _run_loader(tmp_path: Any, files: dict[str, bytes], env: dict[str, str]) -> Any:
    """The secrets loader as rendered, with its directory moved under ``tmp_path``."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, data in files.items():
        (secrets / name).write_bytes(data)
    script = tmp_path / "secrets-env"
    script.write_text(renderers.SECRETS_LOADER_SCRIPT.replace(renderers.SECRETS_DIR, str(secrets)))
    env = {k: v.replace(renderers.SECRETS_DIR, str(secrets)) for k, v in env.items()}
    return subprocess.run(
        ["/bin/bash", str(script), "/usr/bin/env", "-0"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        timeout=10,
        check=False,
    )


def test_secrets_loader_exports_each_file_exactly(tmp_path: Any) -> None:
    """The entrypoint of a built image with secrets gives the service <ENV> with the
    file's whole content (newlines, quotes, `$`, non-ASCII kept), drops <ENV>_FILE, and
    leaves other variables, including a _FILE outside /run/secrets, alone."""
    value = 'line one\n$HOME "quoted" `tick` \\ é\n\n'
    done = _run_loader(
        tmp_path,
        {"API_TOKEN": value.encode(), "EMPTY": b""},
        {
            "API_TOKEN_FILE": f"{renderers.SECRETS_DIR}/API_TOKEN",
            "EMPTY_FILE": f"{renderers.SECRETS_DIR}/EMPTY",
            "CONFIG_FILE": "/etc/app.conf",
            "MODE": "prod",
        },
    )
    assert done.returncode == 0, done.stderr
    got = dict(e.split("=", 1) for e in done.stdout.decode().split("\0") if e)
    assert got["API_TOKEN"] == value and got["EMPTY"] == ""
    assert "API_TOKEN_FILE" not in got and "EMPTY_FILE" not in got
    assert got["CONFIG_FILE"] == "/etc/app.conf" and got["MODE"] == "prod"
    assert "CONFIG" not in got


def test_secrets_loader_stops_on_a_missing_file(tmp_path: Any) -> None:
    done = _run_loader(tmp_path, {}, {"API_TOKEN_FILE": f"{renderers.SECRETS_DIR}/API_TOKEN"})
    assert done.returncode != 0 and done.stdout == b""
    assert b"API_TOKEN" in done.stderr


def test_only_built_services_with_secrets_get_the_loader() -> None:
    plain = service()
    secret = service(secrets={"API_TOKEN": "apiToken"})
    assert "ENTRYPOINT" not in renderers.render_dockerfile(plain)
    assert f'ENTRYPOINT ["{renderers.SECRETS_LOADER}"]' in renderers.render_dockerfile(secret)
    assert set(renderers.render_build_context(secret)) == {"Dockerfile", "twinstack/secrets-env"}
    prebuilt = ServiceSpec.model_validate(
        {
            "name": "svc",
            "image": {
                "container": "nginx:1.27",
                "vm": {"source": "/srv/images/nginx.qcow2"},
                "secrets": {"API_TOKEN": "apiToken"},
            },
        }
    )
    assert not renderers.loads_secrets(prebuilt)  # it reads API_TOKEN_FILE itself
