"""Start a policy pack the way the Pulumi engine does and talk to it over gRPC.

What the engine does for a local Python pack (``pulumi preview --policy-pack DIR``), and what
this module mirrors:

1. It reads ``DIR/PulumiPolicy.yaml`` and picks the interpreter from the runtime options
   (``virtualenv`` relative to the pack), then runs ``python -u -m pulumi.policy
   <engine-address> DIR`` with the working directory set to the pack, and with
   ``PULUMI_CONFIG`` (stack config as JSON), ``PULUMI_PROJECT``, ``PULUMI_STACK``,
   ``PULUMI_DRY_RUN`` and ``PULUMI_ORGANIZATION`` in the environment
   (``pulumi-language-python`` ``RunPlugin``, ``sdk/policy_proxy.go``).
2. The pack prints its gRPC port as the first line of stdout; the engine dials
   ``127.0.0.1:<port>``.
3. ``Handshake`` (UNIMPLEMENTED is fine), ``ConfigureStack``, ``GetAnalyzerInfo``,
   ``Configure`` (the reconciled policy config), then per resource ``Remediate`` and
   ``Analyze``, and at the end ``AnalyzeStack``; ``Cancel`` on shutdown.

Unlike the engine we never wait forever: startup and every call have a deadline, and a
pack that exits, hangs or answers garbage becomes a :class:`PolicyPackError` naming the pack,
the call and the last lines the pack wrote to stderr.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import grpc  # type: ignore[import-untyped]
import yaml
from google.protobuf import empty_pb2  # type: ignore[import-untyped, unused-ignore]
from pulumi.runtime.proto import (
    analyzer_pb2,
    analyzer_pb2_grpc,
    engine_pb2,
    engine_pb2_grpc,
    plugin_pb2,
)

from twinstack.errors import TwinstackError
from twinstack.policy.limits import DEFAULT_CALL_TIMEOUT, STACK_CALL_SECONDS_PER_RESOURCE

DEFAULT_STARTUP_TIMEOUT = 60.0

# Same limit the engine and the Python SDK use (400 MiB).
_MAX_MESSAGE = 1024 * 1024 * 400
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
]

T = TypeVar("T")


class PolicyPackError(TwinstackError):
    """A policy pack could not be started, crashed, hung or answered nonsense."""


@dataclass(frozen=True)
class PackProject:
    """What ``PulumiPolicy.yaml`` says about a pack directory."""

    directory: Path
    runtime: str
    interpreter: str
    version: str | None
    description: str | None


def load_pack_project(pack_dir: Path) -> PackProject:
    """Read ``PulumiPolicy.yaml`` and resolve the interpreter like the engine's toolchain."""
    pack_dir = pack_dir.resolve()
    project_file = pack_dir / "PulumiPolicy.yaml"
    if not pack_dir.is_dir():
        raise PolicyPackError(f"policy pack directory {pack_dir} does not exist")
    if not project_file.is_file():
        raise PolicyPackError(
            f"failed to load Pulumi policy project located at {pack_dir}: "
            "PulumiPolicy.yaml is missing"
        )
    try:
        doc = yaml.safe_load(project_file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PolicyPackError(f"{project_file}: invalid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise PolicyPackError(f"{project_file}: expected a mapping at the top level")
    runtime = doc.get("runtime")
    options: dict[str, Any] = {}
    if isinstance(runtime, dict):
        options = dict(runtime.get("options") or {})
        runtime = runtime.get("name")
    if runtime != "python":
        raise PolicyPackError(
            f"{project_file}: runtime is {runtime!r}; twinstack can only run Python packs "
            "(runtime: python)"
        )
    interpreter = sys.executable
    venv = options.get("virtualenv")
    if isinstance(venv, str) and venv:
        venv_path = Path(venv) if Path(venv).is_absolute() else pack_dir / venv
        candidate = venv_path / "bin" / "python"
        if candidate.exists():
            interpreter = str(candidate)
        # else: fall back to the current interpreter, which has pulumi-policy installed
        # (the engine would create the virtualenv from requirements.txt here).
    version = doc.get("version")
    description = doc.get("description")
    return PackProject(
        directory=pack_dir,
        runtime="python",
        interpreter=interpreter,
        version=str(version) if version is not None else None,
        description=str(description) if description is not None else None,
    )


class _EngineServicer(engine_pb2_grpc.EngineServicer):  # type: ignore[misc, unused-ignore]
    """The bits of the engine service a pack may call: logging."""

    def __init__(self) -> None:
        self.logs: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def Log(self, request: engine_pb2.LogRequest, context: Any) -> empty_pb2.Empty:
        with self._lock:
            self.logs.append((int(request.severity), str(request.message)))
        return empty_pb2.Empty()

    def GetRootResource(self, request: Any, context: Any) -> engine_pb2.GetRootResourceResponse:
        return engine_pb2.GetRootResourceResponse(urn="")

    def SetRootResource(self, request: Any, context: Any) -> engine_pb2.SetRootResourceResponse:
        return engine_pb2.SetRootResourceResponse()


@dataclass
class StackContext:
    """What ``ConfigureStack`` and the pack's environment say about the stack."""

    project: str = "twinstack"
    stack: str = "dev"
    organization: str = "organization"
    dry_run: bool = True
    config: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def _reader(stream: IO[bytes], first_line: queue.Queue[bytes | None] | None, sink: Any) -> None:
    """Drain a pipe; hand the first line to ``first_line`` and keep the rest in ``sink``."""
    try:
        for line in iter(stream.readline, b""):
            if first_line is not None:
                first_line.put(line)
                first_line = None
                continue
            sink.append(line.decode("utf-8", "replace").rstrip("\n"))
    finally:
        if first_line is not None:
            first_line.put(None)  # EOF before the port line: the pack exited


class AnalyzerProcess:
    """One running policy pack, driven through the analyzer protocol.

    Use as a context manager; every method raises :class:`PolicyPackError` rather than
    hanging or returning a partial answer.
    """

    def __init__(
        self,
        pack_dir: Path,
        stack: StackContext | None = None,
        *,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> None:
        self.project = load_pack_project(pack_dir)
        self.stack = stack or StackContext()
        self.startup_timeout = startup_timeout
        self.call_timeout = call_timeout
        self.stderr: collections.deque[str] = collections.deque(maxlen=200)
        self.stdout: collections.deque[str] = collections.deque(maxlen=200)
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: Any = None
        self._stub: Any = None
        self._engine: Any = None
        self._engine_servicer = _EngineServicer()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def name(self) -> str:
        return self.project.directory.name

    def __enter__(self) -> AnalyzerProcess:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_engine(self) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        engine_pb2_grpc.add_EngineServicer_to_server(self._engine_servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._engine = server
        return f"127.0.0.1:{port}"

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        ctx = self.stack
        if ctx.config:
            env["PULUMI_CONFIG"] = json.dumps(ctx.config, sort_keys=True)
        env["PULUMI_PROJECT"] = ctx.project
        env["PULUMI_STACK"] = ctx.stack
        env["PULUMI_ORGANIZATION"] = ctx.organization
        env["PULUMI_DRY_RUN"] = "true" if ctx.dry_run else "false"
        return env

    def start(self) -> None:
        engine_address = self._start_engine()
        argv = [
            self.project.interpreter,
            "-u",
            "-m",
            "pulumi.policy",
            engine_address,
            str(self.project.directory),
        ]
        try:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.project.directory,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise PolicyPackError(f"policy pack {self.name!r} failed to start: {exc}") from exc
        assert self._proc.stdout is not None and self._proc.stderr is not None
        port_line: queue.Queue[bytes | None] = queue.Queue()
        for stream, first, sink in (
            (self._proc.stdout, port_line, self.stdout),
            (self._proc.stderr, None, self.stderr),
        ):
            thread = threading.Thread(target=_reader, args=(stream, first, sink), daemon=True)
            thread.start()
            self._threads.append(thread)

        try:
            line = port_line.get(timeout=self.startup_timeout)
        except queue.Empty:
            raise PolicyPackError(
                f"policy pack {self.name!r} did not report its port within "
                f"{self.startup_timeout:g}s (hung during startup?){self._stderr_tail()}"
            ) from None
        if line is None:
            code = self._wait_exit()
            raise PolicyPackError(
                f"policy pack {self.name!r} exited with code {code} before reporting its "
                f"port{self._stderr_tail()}"
            )
        text = line.decode("utf-8", "replace").strip()
        try:
            port = int(text)
        except ValueError:
            raise PolicyPackError(
                f"could not read policy pack port: {self.name!r} printed {text[:200]!r} "
                f"instead of a port number{self._stderr_tail()}"
            ) from None
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=_CHANNEL_OPTIONS)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.startup_timeout)
        except grpc.FutureTimeoutError:
            raise PolicyPackError(
                f"policy pack {self.name!r} reported port {port} but did not accept a "
                f"connection within {self.startup_timeout:g}s{self._stderr_tail()}"
            ) from None
        self._stub = analyzer_pb2_grpc.AnalyzerStub(self._channel)

    def _wait_exit(self) -> int | None:
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for thread in self._threads:
            thread.join(timeout=2)
        if proc is not None:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        if self._engine is not None:
            self._engine.stop(0)
            self._engine = None

    # ------------------------------------------------------------------ calls

    def _stderr_tail(self, lines: int = 15) -> str:
        tail = [line for line in list(self.stderr)[-lines:] if line.strip()]
        if not tail:
            return ""
        return "\npolicy pack stderr (last lines):\n  " + "\n  ".join(tail)

    def _call(
        self,
        method: str,
        request: Any,
        what: str,
        *,
        optional: bool = False,
        timeout: float | None = None,
    ) -> Any:
        if self._stub is None:
            raise PolicyPackError(f"policy pack {self.name!r} is not running")
        timeout = self.call_timeout if timeout is None else timeout
        try:
            return getattr(self._stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if optional and code == grpc.StatusCode.UNIMPLEMENTED:
                return None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise PolicyPackError(
                    f"policy pack {self.name!r} did not answer {method}({what}) within "
                    f"{timeout:g}s (hung?){self._stderr_tail()}"
                ) from None
            exited = self._proc is not None and (
                self._proc.poll() is not None or code == grpc.StatusCode.UNAVAILABLE
            )
            if exited:
                exit_code = self._wait_exit()
                if exit_code is not None:
                    raise PolicyPackError(
                        f"policy pack {self.name!r} exited with code {exit_code} during "
                        f"{method}({what}){self._stderr_tail()}"
                    ) from None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise PolicyPackError(
                f"policy pack {self.name!r} failed during {method}({what}): "
                f"{code.name}: {details}{self._stderr_tail()}"
            ) from None

    def handshake(self) -> None:
        directory = str(self.project.directory)
        request = analyzer_pb2.AnalyzerHandshakeRequest(
            engine_address="",
            root_directory=directory,
            program_directory=directory,
        )
        self._call("Handshake", request, "", optional=True)

    def configure_stack(self) -> None:
        ctx = self.stack
        request = analyzer_pb2.AnalyzerStackConfigureRequest(
            stack=ctx.stack,
            project=ctx.project,
            organization=ctx.organization,
            dry_run=ctx.dry_run,
            config=ctx.config,
            tags=ctx.tags,
        )
        self._call("ConfigureStack", request, ctx.stack, optional=True)

    def get_analyzer_info(self) -> analyzer_pb2.AnalyzerInfo:
        info: analyzer_pb2.AnalyzerInfo = self._call("GetAnalyzerInfo", empty_pb2.Empty(), "")
        return info

    def get_plugin_info(self) -> plugin_pb2.PluginInfo | None:
        info: plugin_pb2.PluginInfo | None = self._call(
            "GetPluginInfo", empty_pb2.Empty(), "", optional=True
        )
        return info

    def configure(self, policy_config: dict[str, analyzer_pb2.PolicyConfig]) -> None:
        if not policy_config:
            return  # the engine returns early too
        request = analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=policy_config)
        self._call("Configure", request, "")

    def analyze(self, request: analyzer_pb2.AnalyzeRequest) -> analyzer_pb2.AnalyzeResponse:
        response: analyzer_pb2.AnalyzeResponse = self._call("Analyze", request, request.urn)
        return response

    def remediate(self, request: analyzer_pb2.AnalyzeRequest) -> analyzer_pb2.RemediateResponse:
        response: analyzer_pb2.RemediateResponse | None = self._call(
            "Remediate", request, request.urn, optional=True
        )
        return response if response is not None else analyzer_pb2.RemediateResponse()

    def analyze_stack(
        self, resources: list[analyzer_pb2.AnalyzerResource]
    ) -> analyzer_pb2.AnalyzeResponse:
        request = analyzer_pb2.AnalyzeStackRequest(resources=resources)
        # one call for the whole stack: its deadline grows with the stack
        timeout = self.call_timeout + len(resources) * STACK_CALL_SECONDS_PER_RESOURCE
        response: analyzer_pb2.AnalyzeResponse | None = self._call(
            "AnalyzeStack", request, f"{len(resources)} resources", optional=True, timeout=timeout
        )
        return response if response is not None else analyzer_pb2.AnalyzeResponse()

    def cancel(self) -> None:
        with contextlib.suppress(PolicyPackError):  # best effort, like the engine
            self._call("Cancel", empty_pb2.Empty(), "", optional=True)

    @property
    def engine_logs(self) -> list[tuple[int, str]]:
        return list(self._engine_servicer.logs)
