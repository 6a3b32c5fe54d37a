"""Offline checks of the cluster configurations in ``cluster/`` (issue #5).

Nothing here starts Ray or reaches a cloud. The two cluster-launcher configs are checked
the way ``ray up`` checks them before its first cloud call: against the JSON schema that
ships inside the installed ``ray`` package, then through the launcher's own
``prepare_config`` and ``validate_config``. The KubeRay RayJob is checked for the fields
the operator needs. Each checker is also run on a deliberately broken copy, so that a
checker that accepts everything fails here instead of passing silently.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
LAUNCHER_CONFIGS = ("aws.yaml", "onprem.yaml")
RAYJOB = "kuberay-rayjob.yaml"
RAY_PORTS = (6379, 8265, 10001)  # GCS, dashboard and Jobs API, Ray client server
QATSWEEP_SUBCOMMANDS = {"run", "export", "analyze"}
QATSWEEP_RUN_FLAGS = {"--address", "--set"}

# `--dashboard-host=0.0.0.0`, `dashboard-host: "0.0.0.0"`, `dashboard_host="::"` ...
DASHBOARD_ALL_INTERFACES = re.compile(
    r"dashboard[-_]host['\"]?\s*[=:]\s*['\"]?(0\.0\.0\.0(?!\.?\d)|::(?![\w:]))"
)


def load_yaml(name: str) -> Any:
    return yaml.safe_load((CLUSTER / name).read_text())


def ray_schema() -> dict[str, Any]:
    """The cluster-config schema bundled with the installed Ray (what `ray up` uses)."""
    return json.loads(files("ray.autoscaler").joinpath("ray-schema.json").read_text())


def schema_errors(config: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(ray_schema())
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator.iter_errors(config)
    ]


def launcher_prepare(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does to a config before it calls the cloud: defaults, then checks.

    ``commands._bootstrap_config`` runs ``prepare_config``, asks the provider to fill in
    node resources (a cloud call, skipped: the configs state resources explicitly), then
    ``validate_config``, which applies the schema plus cross-field rules.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def start_commands(config: dict[str, Any]) -> dict[str, list[str]]:
    return {
        "head": config["head_start_ray_commands"],
        "worker": config["worker_start_ray_commands"],
    }


def world_open_ray_ports(rules: list[dict[str, Any]]) -> set[int]:
    """Ray ports that EC2 inbound rules (IpPermissions) open to any address."""
    opened: set[int] = set()
    for rule in rules:
        cidrs = {r.get("CidrIp") for r in rule.get("IpRanges", [])}
        cidrs |= {r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])}
        if not cidrs & {"0.0.0.0/0", "::/0"}:
            continue
        low, high = rule.get("FromPort", -1), rule.get("ToPort", -1)
        every_port = str(rule.get("IpProtocol")) == "-1" or low == -1
        opened |= {p for p in RAY_PORTS if every_port or low <= p <= high}
    return opened


# --- cluster-launcher configs -------------------------------------------------------


def test_schema_is_found_in_the_installed_ray() -> None:
    schema = ray_schema()
    assert schema["$schema"].startswith("http://json-schema.org/draft-07")
    assert {"cluster_name", "provider"} <= set(schema["required"])
    assert schema["additionalProperties"] is False  # so unknown keys are errors


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_matches_rays_schema(name: str) -> None:
    assert schema_errors(load_yaml(name)) == []


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_passes_ray_ups_offline_checks(name: str) -> None:
    prepared = launcher_prepare(load_yaml(name))
    assert prepared["head_node_type"] in prepared["available_node_types"]


def node_type(config: dict[str, Any], name: str) -> dict[str, Any]:
    return config["available_node_types"][name]


BROKEN_LAUNCHER_CONFIGS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "misspelled top-level key": lambda c: c.update(max_worker=3),
    "max_workers as a string": lambda c: c.update(max_workers="10"),
    "fractional GPU count": lambda c: node_type(c, "gpu_worker")["resources"].update(GPU=0.5),
    "misspelled node-type key": lambda c: node_type(c, "cpu_worker").update(min_worker=1),
    "provider without type": lambda c: c["provider"].pop("type"),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN_LAUNCHER_CONFIGS))
def test_schema_check_rejects_a_broken_copy(breakage: str) -> None:
    config = load_yaml("aws.yaml")
    BROKEN_LAUNCHER_CONFIGS[breakage](config)
    assert schema_errors(config), f"schema accepted a config with a {breakage}"
    # `ray up` refuses it too (a missing provider type fails before the schema check).
    with pytest.raises((jsonschema.ValidationError, KeyError)):
        launcher_prepare(config)


def test_launcher_checks_reject_what_the_schema_allows() -> None:
    # Both pass the schema; only the launcher's cross-field rules catch them.
    too_few = load_yaml("aws.yaml")
    too_few["available_node_types"]["cpu_worker"]["min_workers"] = too_few["max_workers"] + 1
    no_head = load_yaml("aws.yaml")
    no_head["head_node_type"] = "missing"
    for config, message in ((too_few, "max_workers"), (no_head, "head_node_type")):
        assert schema_errors(config) == []
        with pytest.raises(ValueError, match=message):
            launcher_prepare(config)


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_dashboard_is_bound_to_loopback(name: str) -> None:
    (head,) = [c for c in load_yaml(name)["head_start_ray_commands"] if "ray start" in c]
    assert "--dashboard-host=127.0.0.1" in head


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_every_node_starts_ray_in_token_mode(name: str) -> None:
    config = load_yaml(name)
    for role, commands in start_commands(config).items():
        starts = [c for c in commands if "ray start" in c]
        assert starts, f"no `ray start` among the {role} start commands"
        for command in starts:
            assert re.search(r"RAY_AUTH_MODE=token\s+ray start\b", command), (role, command)
    # The token itself reaches every node through file_mounts, at Ray's default path.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("RAY_AUTH_MODE=token" in c for c in config["setup_commands"])


def test_aws_security_group_opens_no_ray_port_to_the_world() -> None:
    provider = load_yaml("aws.yaml")["provider"]
    # Ray adds these to its default rules (cluster-internal traffic, SSH) when it creates
    # the group; a group named in SecurityGroupIds instead is the user's own to check.
    assert not world_open_ray_ports(provider.get("security_group", {}).get("IpPermissions", []))


def test_world_open_port_check_is_not_vacuous() -> None:
    assert world_open_ray_ports(
        [
            {
                "IpProtocol": "tcp",
                "FromPort": 8000,
                "ToPort": 9000,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ]
    ) == {8265}
    assert world_open_ray_ports(
        [{"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]
    ) == set(RAY_PORTS)
    assert not world_open_ray_ports(
        [
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        ]
    )


def test_aws_node_types_place_gpu_trials_and_scale() -> None:
    config = load_yaml("aws.yaml")
    prepared = launcher_prepare(config)
    types = prepared["available_node_types"]
    head = types.pop(prepared["head_node_type"])
    assert head["resources"].get("CPU") == 0, "trials must not run on the head"
    assert head["max_workers"] == 0
    gpu_types = {n for n, t in types.items() if t["resources"].get("GPU", 0) >= 1}
    cpu_types = {n for n, t in types.items() if t["resources"].get("CPU", 0) >= 1} - gpu_types
    assert gpu_types == {"gpu_worker"}
    assert cpu_types == {"cpu_worker"}
    for name, kind in types.items():
        assert 0 <= kind["min_workers"] <= kind["max_workers"], name
        assert kind["max_workers"] >= 1, name
    assert prepared["idle_timeout_minutes"] > 0
    assert prepared["provider"]["cache_stopped_nodes"] is False


def installed_ray_version() -> str:
    import ray

    return ray.__version__


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_nodes_install_the_launchers_ray_version(name: str) -> None:
    # `ray up` needs the same Ray on the launching machine and on every node.
    pins = re.findall(r"RAY_VERSION=(\S+)", " ".join(load_yaml(name)["setup_commands"]))
    assert pins == [installed_ray_version()]


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_file_mounts_copy_what_setup_installs(name: str) -> None:
    config = load_yaml(name)
    mounts = config["file_mounts"]
    for remote, local in mounts.items():
        if not local.startswith("~"):
            assert (ROOT / local).exists(), f"{remote}: {local} is not in the repository"
    # setup_node.sh runs `pip install ~/qatsweep` from the copied script.
    assert {"~/qatsweep/pyproject.toml", "~/qatsweep/src", "~/qatsweep/cluster"} <= set(mounts)
    assert any("~/qatsweep/cluster/setup_node.sh" in c for c in config["setup_commands"])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_setup_script_is_valid_bash() -> None:
    script = CLUSTER / "setup_node.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "download.pytorch.org/whl/cpu" in text and "nvidia-smi" in text
    assert "chmod 600" in text


# --- KubeRay RayJob -----------------------------------------------------------------


def rayjob_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((CLUSTER / RAYJOB).read_text()) if d]


def the_rayjob() -> dict[str, Any]:
    (rayjob,) = [d for d in rayjob_documents() if d.get("kind") == "RayJob"]
    return rayjob


def rayjob_problems(rayjob: dict[str, Any]) -> list[str]:
    """What would keep KubeRay from running this RayJob as qatsweep intends."""
    problems: list[str] = []
    if rayjob.get("apiVersion") != "ray.io/v1":
        problems.append("apiVersion is not ray.io/v1")
    if rayjob.get("kind") != "RayJob":
        problems.append("kind is not RayJob")
    if not (rayjob.get("metadata") or {}).get("name"):
        problems.append("metadata.name is missing")
    spec = rayjob.get("spec") or {}
    entrypoint = str(spec.get("entrypoint") or "")
    if not entrypoint.startswith("qatsweep run "):
        problems.append("spec.entrypoint does not run `qatsweep run`")
    if re.search(r"[;&|`$]", entrypoint):
        problems.append("spec.entrypoint holds shell syntax the submitter would parse")
    if spec.get("shutdownAfterJobFinishes") is not True:
        problems.append("shutdownAfterJobFinishes is not true")
    cluster = spec.get("rayClusterSpec") or {}
    if (cluster.get("authOptions") or {}).get("mode") != "token":
        problems.append("token authentication is off")
    head = cluster.get("headGroupSpec") or {}
    if head.get("serviceType", "ClusterIP") != "ClusterIP" or head.get("enableIngress"):
        problems.append("the head service is exposed outside the cluster")
    groups = {"head": head}
    workers = cluster.get("workerGroupSpecs") or []
    if not workers:
        problems.append("no workerGroupSpecs")
    for worker in workers:
        name = worker.get("groupName")
        if not name:
            problems.append("a worker group has no groupName")
            name = f"unnamed-{len(groups)}"
        if name in groups:
            problems.append(f"groupName {name} is used twice")
        groups[name] = worker
        counts = [worker.get(k) for k in ("minReplicas", "replicas", "maxReplicas")]
        if not all(isinstance(c, int) for c in counts):
            problems.append(f"{name}: replicas, minReplicas and maxReplicas must be integers")
        elif not counts[0] <= counts[1] <= counts[2]:
            problems.append(f"{name}: needs minReplicas <= replicas <= maxReplicas")
    mounts: dict[str, set[str]] = {}
    gpu_groups = set()
    for name, group in groups.items():
        params = group.get("rayStartParams") or {}
        if DASHBOARD_ALL_INTERFACES.search(yaml.safe_dump(params)):
            problems.append(f"{name}: dashboard-host binds every interface")
        containers = ((group.get("template") or {}).get("spec") or {}).get("containers")
        if not containers:
            problems.append(f"{name}: template.spec.containers is empty")
            containers = []
        for container in containers:
            if not container.get("image"):
                problems.append(f"{name}: a container has no image")
            limits = (container.get("resources") or {}).get("limits") or {}
            if int(limits.get("nvidia.com/gpu", 0)) > 0:
                gpu_groups.add(name)
            for mount in container.get("volumeMounts") or []:
                mounts.setdefault(mount["mountPath"], set()).add(name)
    if not gpu_groups or gpu_groups == set(groups) - {"head"}:
        problems.append("needs both a GPU worker group and a CPU-only one")
    storage = re.search(r"--set storage=(\S+)", entrypoint)
    if not storage:
        problems.append("the entrypoint does not set storage")
    elif not storage.group(1).startswith(("s3://", "gs://")):
        shared = {path for path, users in mounts.items() if users == set(groups)}
        if not any(storage.group(1).startswith(p.rstrip("/") + "/") for p in shared):
            problems.append("storage is neither a URI nor on a volume every pod mounts")
    return problems


def test_rayjob_has_what_kuberay_and_qatsweep_need() -> None:
    assert rayjob_problems(the_rayjob()) == []


def ray_cluster(rayjob: dict[str, Any]) -> dict[str, Any]:
    return rayjob["spec"]["rayClusterSpec"]


def head_group(rayjob: dict[str, Any]) -> dict[str, Any]:
    return ray_cluster(rayjob)["headGroupSpec"]


def first_worker_group(rayjob: dict[str, Any]) -> dict[str, Any]:
    return ray_cluster(rayjob)["workerGroupSpecs"][0]


HEAD_LOCAL_RUN = "qatsweep run tune_configs/seed_study.yaml --set storage=/tmp/results"
BROKEN_RAYJOBS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "no groupName": lambda j: first_worker_group(j).pop("groupName"),
    "minReplicas above maxReplicas": lambda j: first_worker_group(j).update(
        minReplicas=9, maxReplicas=1
    ),
    "head without image": lambda j: head_group(j)["template"]["spec"]["containers"][0].pop(
        "image"
    ),
    "another entrypoint": lambda j: j["spec"].update(entrypoint="python train.py"),
    "storage on the head only": lambda j: j["spec"].update(entrypoint=HEAD_LOCAL_RUN),
    "cluster kept after the job": lambda j: j["spec"].update(shutdownAfterJobFinishes=False),
    "LoadBalancer head": lambda j: head_group(j).update(serviceType="LoadBalancer"),
    "dashboard on every interface": lambda j: head_group(j)["rayStartParams"].update(
        {"dashboard-host": "0.0.0.0"}
    ),
    "no GPU group": lambda j: ray_cluster(j).update(
        workerGroupSpecs=ray_cluster(j)["workerGroupSpecs"][:1]
    ),
    "no token auth": lambda j: ray_cluster(j).pop("authOptions"),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN_RAYJOBS))
def test_rayjob_check_rejects_a_broken_copy(breakage: str) -> None:
    rayjob = the_rayjob()
    BROKEN_RAYJOBS[breakage](rayjob)
    assert rayjob_problems(rayjob), f"the check accepted a RayJob with {breakage}"


def test_rayjob_volume_claim_is_defined_and_shared() -> None:
    claims = {
        d["metadata"]["name"]: d
        for d in rayjob_documents()
        if d.get("kind") == "PersistentVolumeClaim"
    }
    cluster = the_rayjob()["spec"]["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        for volume in group["template"]["spec"].get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim:
                assert claim in claims, f"claim {claim} is not defined in {RAYJOB}"
                # Pods on different nodes write results at once.
                assert "ReadWriteMany" in claims[claim]["spec"]["accessModes"]


def test_rayjob_and_image_use_the_installed_ray_version() -> None:
    version = installed_ray_version()
    assert the_rayjob()["spec"]["rayClusterSpec"]["rayVersion"] == version
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", (CLUSTER / "Dockerfile").read_text(), re.M)
    assert base and base.group(1).startswith(f"rayproject/ray:{version}-")


# --- every file under cluster/ ------------------------------------------------------


def test_no_config_binds_the_dashboard_to_every_interface() -> None:
    for path in sorted(CLUSTER.iterdir()):
        if path.suffix in {".yaml", ".yml", ".sh"} or path.name == "Dockerfile":
            match = DASHBOARD_ALL_INTERFACES.search(path.read_text())
            assert not match, f"{path.name}: {match.group(0) if match else ''}"


@pytest.mark.parametrize(
    ("text", "binds_all"),
    [
        ("ray start --head --dashboard-host=0.0.0.0", True),
        ("rayStartParams:\n  dashboard-host: '0.0.0.0'\n", True),
        ('dashboard_host="::"', True),
        ("--dashboard-host=127.0.0.1", False),
        ("--dashboard-host=0.0.0.01", False),
        ("--dashboard-host=::1", False),
        ("# --dashboard-host=0.0.0.0: exposed", True),
    ],
)
def test_dashboard_pattern_is_not_vacuous(text: str, binds_all: bool) -> None:
    assert bool(DASHBOARD_ALL_INTERFACES.search(text)) is binds_all


def test_cluster_files_fit_99_columns() -> None:
    for path in sorted(CLUSTER.iterdir()):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert len(line) <= 99, f"{path.name}:{number} is {len(line)} columns"


def readme_code() -> list[str]:
    """Code blocks and inline code of cluster/README.md, line continuations joined."""
    text = (CLUSTER / "README.md").read_text()
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return [re.sub(r"\\\n\s*", " ", code) for code in blocks + inline]


def test_readme_uses_only_qatsweeps_real_commands() -> None:
    used = []
    for code in readme_code():
        for match in re.finditer(r"\bqatsweep (\S+)([^\n]*)", code):
            subcommand, rest = match.groups()
            used.append(subcommand)
            assert subcommand in QATSWEEP_SUBCOMMANDS, match.group(0)
            if subcommand == "run":
                flags = set(re.findall(r"(?<!\S)(--[\w-]+)", rest))
                assert flags <= QATSWEEP_RUN_FLAGS, match.group(0)
    assert {"run", "export", "analyze"} <= set(used)
