"""Service files: a stack's services in YAML files that `twinstack:serviceFiles` names.

They are merged after the inline services and validated like them; errors name the service
file and the key path in it; their paths have a declared grammar and stay in the project;
and what travels in one config value (PULUMI_CONFIG) is the list of paths, not the
services, so a stack past the kernel's 128 KiB limit for one environment variable runs
under `twinstack policy` (the last test, through the real CLI).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import components.spec as spec_mod
from components.spec import load_stack, spec_from_config
from twinstack.errors import SpecError
from twinstack.measure.stackfile import derive_config
from twinstack.plan import _mock_config, plan_stack
from twinstack.policy.host import AnalyzerProcess, StackContext
from twinstack.policy.runner import stack_config

from .helpers import REPO, VENV_BIN, base_config, make_project, write_stack


def svc(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "build": {"command": ["/usr/local/bin/app"]}, **extra}


def write_services(root: Path, rel: str, services: Any, key: str = "services") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({key: services}, sort_keys=False), encoding="utf-8")
    return path


def stack_with(root: Path, files: Any, inline: list[dict[str, Any]] | None = None) -> Path:
    cfg = base_config()
    cfg["twinstack:services"] = inline if inline is not None else cfg["twinstack:services"]
    cfg["twinstack:serviceFiles"] = files
    return write_stack(root, "sf", cfg)


def load_error(path: Path) -> str:
    with pytest.raises(SpecError) as err:
        load_stack(path)
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ----------------------------------------------------------------- loading and merging


def test_services_merge_inline_first_then_files_in_listed_order(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    write_services(root, "services/web.yaml", [svc("one"), svc("two")])
    write_services(root, "services/dev/b.yaml", [svc("bee")])
    write_services(root, "services/dev/a.yaml", [svc("ay")])
    (root / "services/dev/notes.txt").write_text("not matched")
    (root / "services/dev/.hidden.yaml").write_text("services: [{name: hidden}]")
    path = stack_with(root, ["services/web.yaml", "services/dev/*.yaml", "services/web.yaml"])
    spec = load_stack(path)
    # a pattern's matches in path order; a file listed twice is read once
    assert [s.name for s in spec.services] == ["web", "api", "one", "two", "ay", "bee"]
    assert spec.service_files == ["services/web.yaml", "services/dev/*.yaml", "services/web.yaml"]
    assert spec.locate("x", ("services", 5, "name")) == "services/dev/b.yaml: services[0].name"
    assert spec.locate("x", ("services", 1)) == "x: twinstack:services[1]"


def test_relative_to_the_project_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "proj")
    write_services(root, "services/web.yaml", [svc("one")])
    path = stack_with(root, ["services/web.yaml"])
    monkeypatch.chdir(tmp_path)
    assert [s.name for s in load_stack(path).services][-1] == "one"
    # the program's way: config only, files relative to the project it runs in
    monkeypatch.chdir(root / "stacks")
    config = {"twinstack:services": [], "twinstack:serviceFiles": ["services/web.yaml"]}
    assert [s.name for s in spec_from_config(config, source="s").services] == ["one"]


def test_a_symlink_inside_the_project_is_followed(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    write_services(root, "shared/web.yaml", [svc("one")])
    (root / "services").mkdir()
    os.symlink(root / "shared/web.yaml", root / "services/web.yaml")
    assert load_stack(stack_with(root, ["services/*.yaml"])).services[-1].name == "one"


def test_plan_of_service_files_equals_the_inline_plan(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    services = base_config()["twinstack:services"]
    write_services(root, "services/all.yaml", services)
    stack_with(root, ["services/all.yaml"], inline=[])
    inline = base_config()
    write_stack(root, "inl", inline)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        files_plan = plan_stack("sf", root=root)
        inline_plan = plan_stack("inl", root=root)
    finally:
        os.chdir(cwd)

    def strip(doc: dict[str, Any]) -> str:
        return json.dumps(doc["resources"]).replace("-sf-", "-X-").replace(":sf:", ":X:")

    assert files_plan["resources"] and len(files_plan["resources"]) == len(inline_plan["resources"])
    assert strip(files_plan).replace("sf", "X") == strip(inline_plan).replace("inl", "X")


def test_diff_counts_services_from_files_and_their_pinned_runtimes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twinstack.density.diffing import build_report

    root = make_project(tmp_path / "proj")
    write_services(root, "services/a.yaml", [svc("pinned", runtime="container"), svc("free")])
    stack_with(root, ["services/a.yaml"])
    monkeypatch.chdir(root)
    report = build_report(stack="sf")
    # a service that pins its runtime counts on both sides (it is read from its file)
    for side in (report.a, report.b):
        assert set(side.services) == {"web", "api", "pinned", "free"}


def test_measure_finds_a_service_from_a_service_file(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    write_services(root, "services/web.yaml", [svc("one", replicas=3)])
    path = stack_with(root, ["services/web.yaml"])
    config = yaml.safe_load(path.read_text())["config"]
    out, _ = derive_config(
        config, "one", runtime="container", count=2, domain_type="qemu",
        cidr="10.200.0.0/24", stack="m", source=str(path),
    )  # fmt: skip
    assert [s["name"] for s in out["twinstack:services"]] == ["one"]
    assert out["twinstack:services"][0]["replicas"] == 2
    assert "twinstack:serviceFiles" not in out


# ------------------------------------------------------------ errors name file + key path


def test_a_bad_value_names_the_service_file_and_its_key_path(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    bad = [svc(f"s{i}") for i in range(13)]
    bad[12]["resources"] = {"memoryMib": 8}
    write_services(root, "services/big.yaml", bad)
    msg = load_error(stack_with(root, ["services/big.yaml"]))
    assert msg.startswith("services/big.yaml: services[12].resources.memoryMib: 8: ")
    assert "greater than or equal to 16" in msg


def test_unknown_key_and_cross_field_errors_name_the_service_file(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    write_services(root, "services/a.yaml", [svc("ok"), svc("bad", replica=2)])
    msg = load_error(stack_with(root, ["services/a.yaml"]))
    assert msg.startswith("services/a.yaml: services[1].replica: unknown key 'replica'")
    assert "replicas" in msg  # what is allowed
    # a VM-only rule (runtime both in base_config) on a service from a file
    write_services(root, "services/a.yaml", [svc("vm", resources={"memoryMib": 64})])
    msg = load_error(stack_with(root, ["services/a.yaml"]))
    assert msg.startswith("services/a.yaml: services[0].resources.memoryMib: 64 is too small")


def test_duplicate_names_across_files_name_both_places(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    write_services(root, "services/a.yaml", [svc("x"), svc("web2"), svc("y")])
    write_services(root, "services/b.yaml", [svc("z"), svc("web2")])
    msg = load_error(stack_with(root, ["services/*.yaml"]))
    assert msg == (
        "services/b.yaml: services[1].name: 'web2' duplicate service name; also "
        "services/a.yaml: services[1]"
    )
    # and against an inline service: the stack file is named
    write_services(root, "services/b.yaml", [svc("web")])
    path = stack_with(root, ["services/b.yaml"])
    msg = load_error(path)
    assert msg == (
        f"services/b.yaml: services[0].name: 'web' duplicate service name; also "
        f"{path}: twinstack:services[0]"
    )


def test_host_port_clash_names_the_other_file(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    port = {"name": "http", "port": 80, "hostPort": 18080}  # base_config's web has 18080
    write_services(root, "services/a.yaml", [svc("clash", ports=[port])])
    path = stack_with(root, ["services/a.yaml"])
    msg = load_error(path)
    assert msg.startswith("services/a.yaml: services[0].ports[0].hostPort: 18080 host port")
    assert f"already published by {path}: twinstack:services[0].ports[0] (web/http" in msg


def test_unset_secret_of_a_file_service_names_the_file(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    s = svc("sec")
    s["build"]["secrets"] = {"TOKEN": "apiToken"}
    write_services(root, "services/a.yaml", [s])
    msg = load_error(stack_with(root, ["services/a.yaml"]))
    assert msg.startswith("services/a.yaml: services[0].build.secrets.TOKEN: config key")
    assert "pulumi config set --secret apiToken" in msg


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "services/a.yaml: is empty; a service file is a mapping"),
        ("- name: x\n", "services/a.yaml: holds a list, not a mapping"),
        ("services: []\nnetworks: []\n", "unknown top-level key(s) 'networks'; allowed: services"),
        ("other: 1\n", "unknown top-level key(s) 'other'"),
        ("{}\n", "services/a.yaml: services: required key is missing"),
        ("services: {name: x}\n", "services/a.yaml: services: {'name': 'x'} is not a list"),
        ("services: [\n", "services/a.yaml: line 2, column 1: not valid YAML"),
        ("services: !!python/object:os.system []\n", "is not supported"),
        ("services:\n  - name: \xff\n", None),  # written as Latin-1 below: not UTF-8
    ],
)
def test_service_file_shape_and_yaml_errors(
    tmp_path: Path, content: str, expected: str | None
) -> None:
    root = make_project(tmp_path / "proj")
    (root / "services").mkdir()
    data = content.encode("latin-1") if expected is None else content.encode()
    (root / "services/a.yaml").write_bytes(data)
    msg = load_error(stack_with(root, ["services/a.yaml"]))
    assert msg.startswith("services/a.yaml:"), msg
    assert (expected or "is not valid UTF-8") in msg


# ------------------------------------------------------------------------ path grammar


@pytest.mark.parametrize(
    "ref",
    [
        "/etc/twinstack/services.yaml",  # absolute
        "../outside.yaml",  # leaves the project
        "services/../../outside.yaml",
        "./services/a.yaml",
        "services//a.yaml",
        ".hidden.yaml",
        "services/a.txt",  # not YAML
        "services/a",
        "**/a.yaml",
        "services/a.yaml\n",
        "services/a b.yaml",
        "x" * 300 + ".yaml",
        12,
        None,
    ],
)
def test_paths_outside_the_grammar_are_refused(tmp_path: Path, ref: Any) -> None:
    root = make_project(tmp_path / "proj")
    (tmp_path / "outside.yaml").write_text("services: [{name: evil}]\n")
    msg = load_error(stack_with(root, [ref]))
    assert msg.startswith(f"{root}/stacks/Pulumi.sf.yaml: twinstack:serviceFiles[0]: ")
    assert "is not allowed; allowed: a relative path inside the project" in msg


def test_service_files_must_be_a_list(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    msg = load_error(stack_with(root, "services/a.yaml"))
    assert "twinstack:serviceFiles: 'services/a.yaml' is not a list of paths" in msg


def test_missing_file_and_empty_pattern_are_errors(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    msg = load_error(stack_with(root, ["services/nope.yaml"]))
    assert "twinstack:serviceFiles[0]: services/nope.yaml: no such service file" in msg
    msg = load_error(stack_with(root, ["services/dev/*.yaml"]))
    assert "twinstack:serviceFiles[0]: 'services/dev/*.yaml' matches no file" in msg
    write_services(root, "services/dev/a.yaml", [svc("one")])
    msg = load_error(stack_with(root, ["services/*/b.yaml"]))
    assert "twinstack:serviceFiles[0]: 'services/*/b.yaml' matches no file" in msg
    assert load_stack(stack_with(root, ["services/*/a.yaml"])).services[-1].name == "one"


def test_a_directory_is_not_a_service_file(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    (root / "services/dir.yaml").mkdir(parents=True)
    msg = load_error(stack_with(root, ["services/dir.yaml"]))
    assert "services/dir.yaml: is not a regular file" in msg


def test_symlinks_out_of_the_project_are_refused(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    outside = tmp_path / "outside"
    write_services(outside, "evil.yaml", [svc("evil")])
    (root / "services").mkdir()
    os.symlink(outside / "evil.yaml", root / "services/evil.yaml")
    msg = load_error(stack_with(root, ["services/evil.yaml"]))
    assert "services/evil.yaml: is a symbolic link (or lies under one) that leads outside" in msg
    msg = load_error(stack_with(root, ["services/*.yaml"]))
    assert "leads outside the project" in msg
    # a directory link: both a literal path through it and a pattern under it
    os.remove(root / "services/evil.yaml")
    os.symlink(outside, root / "services/ext")
    for ref in ("services/ext/evil.yaml", "services/ext/*.yaml", "services/*/evil.yaml"):
        msg = load_error(stack_with(root, [ref]))
        assert "leads outside the project" in msg, ref


def test_a_symlink_loop_is_an_error(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    (root / "services").mkdir()
    os.symlink(root / "services/b.yaml", root / "services/a.yaml")
    os.symlink(root / "services/a.yaml", root / "services/b.yaml")
    msg = load_error(stack_with(root, ["services/a.yaml"]))
    assert "twinstack:serviceFiles[0]: services/a.yaml: cannot read" in msg


def test_the_files_of_a_stack_are_bounded_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "proj")
    for k in range(3):
        write_services(root, f"services/s{k}.yaml", [svc(f"s{k}-{i}") for i in range(10)])
    monkeypatch.setattr(spec_mod, "MAX_SERVICE_FILES_NODES", 150)
    msg = load_error(stack_with(root, ["services/*.yaml"]))
    assert msg.startswith("services/s")  # the file that went over, and where in it
    assert "the service files of a stack together may hold at most" in msg
    monkeypatch.setattr(spec_mod, "MAX_SERVICE_FILES", 2)
    msg = load_error(stack_with(root, ["services/*.yaml"]))
    assert "matches more than 2 paths" in msg
    monkeypatch.setattr(spec_mod, "MAX_SERVICE_FILES", 1000)
    monkeypatch.setattr(spec_mod, "MAX_SERVICE_FILES_BYTES", 200)
    msg = load_error(stack_with(root, ["services/*.yaml"]))
    assert "hold more than 200 bytes together" in msg


def test_the_schema_documents_service_files() -> None:
    schema = spec_mod.json_schema()
    prop = schema["properties"]["config"]["properties"]["twinstack:serviceFiles"]
    assert prop["items"]["pattern"] == spec_mod.SERVICE_FILE_PATTERN
    file_schema = spec_mod.service_file_schema()
    assert file_schema["required"] == ["services"]
    assert file_schema["additionalProperties"] is False


# ------------------------------------------------- past the config-size wall, for real

ARG_MAX_STRLEN = 128 * 1024
"""Linux's MAX_ARG_STRLEN: the longest single environment string exec accepts."""


def _bench_services(n: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"svc{i}",
            "build": {
                "base": "twinstack/debian-base:bookworm",
                "command": ["python3", "-m", "http.server", "8080"],
                "environment": {"SERVICE": f"svc{i}", "MODE": "bench"},
                "files": [{"path": f"/srv/svc{i}/index.html", "content": f"svc {i}\n"}],
            },
            "resources": {"vcpus": 0.5, "memoryMib": 128},
            "ports": [{"name": "http", "port": 8080, "hostPort": 20000 + i}],
            "healthCheck": {"http": {"path": "/", "port": "http"}},
        }
        for i in range(n)
    ]


def test_a_stack_past_the_env_limit_passes_policy_through_the_cli(tmp_path: Path) -> None:
    """300 services: inline they make PULUMI_CONFIG over 128 KiB and the kernel refuses to
    start the pack; from service files the same services pass, and PULUMI_CONFIG (exactly
    what the policy host puts into the pack's environment) stays under 1 KiB."""
    root = make_project(tmp_path / "proj")
    services = _bench_services(300)
    write_services(root, "services/a.yaml", services[:150])
    write_services(root, "services/b.yaml", services[150:])
    base = {
        "twinstack:runtime": "container",
        "twinstack:networks": [{"name": "apps", "cidr": "10.90.0.0/22"}],
    }
    write_stack(root, "files", {**base, "twinstack:serviceFiles": ["services/*.yaml"]})
    write_stack(root, "inline", {**base, "twinstack:services": services})
    pack = REPO / "policies" / "container-security"

    def pulumi_config(stack: str) -> int:
        plan = {"stackFile": f"stacks/Pulumi.{stack}.yaml", "stack": stack}
        context = StackContext(stack=stack, config=stack_config(plan, root))
        env = AnalyzerProcess(pack, context)._environment()
        return len(f"PULUMI_CONFIG={env['PULUMI_CONFIG']}".encode())

    assert pulumi_config("files") < 1024 < ARG_MAX_STRLEN < pulumi_config("inline")
    # what the program gets as config (the language host's PULUMI_CONFIG under the engine)
    raw = yaml.safe_load((root / "stacks/Pulumi.files.yaml").read_text())["config"]
    assert len(json.dumps(_mock_config(raw, None)[0])) < 1024

    def policy(stack: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "twinstack"), "policy", "--stack", stack, "--pack", str(pack)],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
            env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(root)},
        )

    files = policy("files")
    assert files.returncode == 0, files.stderr
    assert "passed: 0 mandatory" in files.stdout
    inline = policy("inline")
    assert inline.returncode == 2
    assert "Argument list too long" in inline.stderr
