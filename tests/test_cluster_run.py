"""Issue #5, launching on a Ray cluster: a real multi-node cluster on this machine.

The module starts one Ray cluster of three nodes with ``ray start``, each node with its own
temp dir and ports: a head with no CPUs (it runs drivers, never trials, as on AWS and
KubeRay) and two workers with one CPU each, one of which offers a custom resource
``accel``. Sweeps are then launched the two ways ``cluster/README.md`` documents:

- through the Ray Jobs API (``ray job submit --working-dir``), when this Python has the
  dashboard's dependencies (``ray[default]``); the test says why it skips otherwise;
- with ``qatsweep run --address``, the driver joining the running cluster.

Ray state stays away from the user's: every process gets a private ``HOME`` (Ray 2.60
keeps its token in ``~/.ray/auth_token``) and token authentication is on, as the README
asks of every cluster. Ray registers its nodes under the machine's own address even when
told 127.0.0.1, and its GCS listens on every interface, so the token is what keeps other
users of the machine out. Teardown kills exactly the processes this module started: those
in the sessions of its ``ray start`` commands, those carrying its marker variable, and
their descendants. It never runs ``ray stop``, which stops every Ray of the user.

The shared-storage check (``qatsweep.preflight.check_shared_storage``) needs several machines,
so it is unit-tested here with ``ray.nodes`` and ``/proc/mounts`` stood in for.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pytest

from qatsweep.errors import ConfigError
from qatsweep.sweep_config import load_sweep

from .conftest import REPO

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SMOKE = REPO / "tune_configs" / "smoke.yaml"
RAY = [sys.executable, "-m", "ray.scripts.scripts"]
MARKER = "QATSWEEP_TEST_CLUSTER"
ACCEL = "accel"

#: Bounds on every wait, in seconds.
START_TIMEOUT = 120
SWEEP_TIMEOUT = 300
STOP_GRACE = 3

#: Variables of the user's shell that would point our processes at another cluster or token.
FOREIGN_RAY_VARIABLES = (
    "RAY_ADDRESS",
    "RAY_API_SERVER_ADDRESS",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_AUTH_MODE",
)


def dashboard_missing() -> str | None:
    """Why this Python cannot run Ray's dashboard (and so its Jobs API), or ``None``."""
    try:
        importlib.import_module("ray.dashboard.optional_deps")
    except ImportError as err:
        return str(err)
    return None


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now, all different."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tail(text: str, limit: int = 4000) -> str:
    return text[-limit:]


# --------------------------------------------------------------------------- processes


class Process(NamedTuple):
    ppid: int
    session: int
    environ: list[bytes]
    alive: bool  # neither dead nor a zombie


def process_table() -> dict[int, Process]:
    table: dict[int, Process] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            # Fields after the command name, which may hold spaces and parentheses.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            state, ppid, session = fields[0], int(fields[1]), int(fields[3])
        except (OSError, ValueError, IndexError):
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            environ = []
        table[pid] = Process(ppid, session, environ, state not in ("Z", "X"))
    return table


def our_processes(sessions: set[int], marker: str) -> set[int]:
    """The live processes that this module's cluster started, and nothing else.

    Ray's daemons and workers stay in the session of the ``ray start`` that launched them
    (workers rename themselves, which overwrites their environment, but keep the session);
    a job's driver gets a session of its own but keeps the marker variable and its parent.
    Session ids are pids of this module's own ``ray start`` commands, which the kernel does
    not hand out again while the session has members.
    """
    tag = marker.encode()
    table = process_table()
    ours = {
        pid
        for pid, process in table.items()
        if process.session in sessions or (tag and tag in process.environ)
    }
    grown = True
    while grown:
        grown = False
        for pid, process in table.items():
            if pid not in ours and process.ppid in ours:
                ours.add(pid)
                grown = True
    ours.discard(os.getpid())
    return {pid for pid in ours if table[pid].alive}


def kill_processes(sessions: set[int], marker: str) -> list[int]:
    """SIGTERM, then after a grace period SIGKILL, each process of ours; returns survivors."""
    for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
        pids = our_processes(sessions, marker)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.2)
            pids = our_processes(sessions, marker)
        if not pids:
            return []
    return sorted(our_processes(sessions, marker))


# --------------------------------------------------------------------------- the cluster

#: Waits (bounded) until the cluster has N live nodes, then prints them as JSON.
NODES_SCRIPT = """
import json, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
deadline = time.monotonic() + float(sys.argv[3])
while True:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) >= int(sys.argv[2]) or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(json.dumps([{"node_id": n["NodeID"], "ip": n["NodeManagerAddress"],
                   "resources": n["Resources"]} for n in nodes]))
ray.shutdown()
"""


class LoopbackCluster:
    """A Ray cluster of several nodes on this machine, each with its own temp dir and ports.

    Every process it runs gets ``env``: a private ``HOME`` holding the cluster's token,
    token authentication on, and the marker variable that teardown looks for.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        home = root / "home"
        (home / ".ray").mkdir(parents=True, mode=0o700)
        descriptor = os.open(
            home / ".ray" / "auth_token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
        self.marker_value = uuid.uuid4().hex
        self.marker = f"{MARKER}={self.marker_value}"
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_RAY_VARIABLES}
        env.update(
            {
                "HOME": str(home),
                "RAY_AUTH_MODE": "token",  # the token is $HOME/.ray/auth_token
                "RAY_USAGE_STATS_ENABLED": "0",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                MARKER: self.marker_value,
            }
        )
        self.env = env
        self.sessions: set[int] = set()
        self.logs: list[Path] = []
        self.gcs_address = ""
        self.dashboard_url: str | None = None
        self.nodes: list[dict[str, Any]] = []

    # ---- starting

    def start(self, with_dashboard: bool) -> None:
        gcs, dashboard, head_agent, client, agent_1, agent_2 = free_ports(6)
        common = [
            "--node-ip-address=127.0.0.1",
            "--num-gpus=0",
            f"--object-store-memory={100 * 1024 * 1024}",
            "--disable-usage-stats",
        ]
        head = self._ray_start(
            "h",
            [
                "--head",
                f"--port={gcs}",
                "--num-cpus=0",  # drivers only, as on AWS and KubeRay
                f"--include-dashboard={'true' if with_dashboard else 'false'}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard}",
                f"--dashboard-agent-listen-port={head_agent}",
                # Ray's client server (default port 10001) starts where ray[client] is
                # installed; it must not take the port of another Ray on this machine.
                *([f"--ray-client-server-port={client}"] if has_module("grpc") else []),
                *common,
            ],
        )
        self._wait_started(head, "head")
        self.gcs_address = f"127.0.0.1:{gcs}"
        if with_dashboard:
            self.dashboard_url = f"http://127.0.0.1:{dashboard}"

        workers = {
            name: self._ray_start(
                name,
                [
                    f"--address={self.gcs_address}",
                    "--num-cpus=1",
                    f"--dashboard-agent-listen-port={agent}",
                    *extra,
                    *common,
                ],
            )
            for name, agent, extra in (
                ("w1", agent_1, []),
                ("w2", agent_2, [f"--resources={json.dumps({ACCEL: 2})}"]),
            )
        }
        for name, worker in workers.items():
            self._wait_started(worker, name)

        result = self.run(
            [sys.executable, "-c", NODES_SCRIPT, self.gcs_address, "3", str(START_TIMEOUT / 2)],
            timeout=START_TIMEOUT,
            cwd=self.root,
        )
        assert result.returncode == 0, tail(result.stderr) + self.start_logs()
        nodes = json.loads(result.stdout.strip().splitlines()[-1])
        for node in nodes:
            resources = node["resources"]
            node["role"] = (
                "accel"
                if ACCEL in resources
                else ("worker" if resources.get("CPU", 0) > 0 else "head")
            )
        roles = sorted(node["role"] for node in nodes)
        assert roles == ["accel", "head", "worker"], (nodes, self.start_logs())
        self.nodes = nodes

    def _ray_start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """``ray start`` in a session of its own, with its own temp dir, as its own machine.

        Nodes on one machine must not share a temp dir: each node's runtime-env agent
        deletes the job's ``working_dir`` copy there when its own last user ends, pulling
        the directory from under a driver that still runs in it on another node.
        """
        log = self.root / f"{name}.start.log"
        self.logs.append(log)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*RAY, "start", f"--temp-dir={self.root / name}", *args],
                env=self.env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.sessions.add(process.pid)
        return process

    def _wait_started(self, process: subprocess.Popen[bytes], name: str) -> None:
        try:
            code = process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            raise AssertionError(f"ray start of {name} hung\n{self.start_logs()}") from None
        assert code == 0, f"ray start of {name} exited {code}\n{self.start_logs()}"

    def start_logs(self) -> str:
        return "".join(
            f"\n--- {log.name}\n{tail(log.read_text(errors='replace'), 1500)}"
            for log in self.logs
            if log.exists()
        )

    # ---- using

    def node_id(self, role: str) -> str:
        (node_id,) = [node["node_id"] for node in self.nodes if node["role"] == role]
        return node_id

    def run(
        self, args: list[str], timeout: float = SWEEP_TIMEOUT, cwd: Path = REPO
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the cluster's environment, bounded by ``timeout``."""
        return subprocess.run(
            args,
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # ---- stopping

    def stop(self) -> list[int]:
        """Kill every process of this cluster; returns the pids that would not die."""
        survivors = kill_processes(self.sessions, self.marker)
        shutil.rmtree(self.root, ignore_errors=True)
        return survivors


@pytest.fixture(scope="module")
def cluster() -> Iterator[LoopbackCluster]:
    # Ray's socket paths must stay short (about 107 bytes): a short root under /tmp.
    root = Path(tempfile.mkdtemp(prefix="qsc", dir="/tmp"))
    started = LoopbackCluster(root)
    try:
        started.start(with_dashboard=dashboard_missing() is None)
        yield started
    finally:
        survivors = started.stop()
        assert not survivors, f"processes of the test cluster outlived teardown: {survivors}"


def read_trials(experiment: Path) -> pd.DataFrame:
    path = experiment / "trials.parquet"
    assert path.is_file(), f"no {path}"
    return pd.read_parquet(path)


def show(frame: pd.DataFrame) -> str:
    return frame[["trial_id", "width", "status", "node", "trained_on", "error"]].to_string()


# --------------------------------------------------------------------------- cluster tests


def test_cluster_has_a_cpu_less_head_and_two_workers(cluster):
    by_role = {node["role"]: node["resources"] for node in cluster.nodes}
    assert by_role["head"].get("CPU", 0) == 0
    assert by_role["worker"]["CPU"] == 1 and by_role["accel"]["CPU"] == 1
    assert by_role["accel"][ACCEL] == 2 and ACCEL not in by_role["worker"]
    assert all("GPU" not in resources for resources in by_role.values())


def test_jobs_api_submission_spreads_trials_over_nodes(cluster, tmp_path):
    """``ray job submit --working-dir`` of the smoke sweep, as cluster/README.md section 7."""
    missing = dashboard_missing()
    if missing is not None:
        pytest.skip(
            f"the Ray Jobs API needs the dashboard, which needs ray[default] ({missing}); "
            "test_address_driver_places_custom_resource_trials covers `qatsweep run --address`"
        )
    assert cluster.dashboard_url is not None
    results = tmp_path / "results"
    # After `--` the CLI quotes each word for the shell, as a user's shell would have.
    entrypoint = [
        sys.executable,
        "-m",
        "qatsweep",
        "run",
        "tune_configs/smoke.yaml",  # relative: resolved in the uploaded working dir
        "--no-progress",
        "--set",
        f"storage={results}",
        "--set",
        "grid.seed=[0,1]",  # four trials for two one-CPU workers
    ]
    submission = f"qatsweep-test-{uuid.uuid4().hex[:8]}"
    job = cluster.run(
        [
            *RAY,
            "job",
            "submit",
            "--address",
            cluster.dashboard_url,
            "--working-dir",
            str(REPO),
            "--submission-id",
            submission,
            "--",
            *entrypoint,
        ]
    )
    # The CLI logs one line per ignored file to stderr; the job's own output is on stdout.
    notes = "".join(line for line in job.stderr.splitlines(True) if "packaging.py" not in line)
    output = notes + job.stdout
    assert job.returncode == 0, tail(output)
    assert f"Job '{submission}' succeeded" in output, tail(output)

    trials = read_trials(results / "smoke")
    assert len(trials) == 4, show(trials)
    assert trials["status"].eq("finished").all(), show(trials)
    nodes = set(trials["node"])
    assert len(nodes) > 1, show(trials)  # spread over both workers
    assert nodes <= {cluster.node_id("worker"), cluster.node_id("accel")}, show(trials)
    assert trials["trained_on"].eq("cpu").all(), show(trials)
    assert trials["hostname"].eq(socket.gethostname()).all()


def test_address_driver_places_custom_resource_trials(cluster, tmp_path):
    """``qatsweep run --address``: overrides pin width 32 to the node that offers ``accel``."""
    results = tmp_path / "results"
    run = cluster.run(
        [
            sys.executable,
            "-m",
            "qatsweep",
            "run",
            str(SMOKE),
            "--address",
            cluster.gcs_address,
            "--no-progress",
            "--set",
            f"storage={results}",
            "--set",
            "name=placement",
            "--set",
            "grid.width=[8,32]",
            "--set",
            f"resources.overrides=[{{when: {{width: [32]}}, custom: {{{ACCEL}: 1}}}}]",
        ]
    )
    assert run.returncode == 0, tail(run.stderr)

    trials = read_trials(results / "placement")
    assert len(trials) == 4, show(trials)
    assert trials["status"].eq("finished").all(), show(trials)
    accel, worker = cluster.node_id("accel"), cluster.node_id("worker")
    wide, narrow = trials[trials["width"] == 32], trials[trials["width"] == 8]
    assert len(wide) == 2 and wide["node"].eq(accel).all(), show(trials)
    # The other points asked for no accel: the worker without it took at least one of them.
    assert narrow["node"].isin({accel, worker}).all(), show(trials)
    assert narrow["node"].eq(worker).any(), show(trials)
    assert not trials["node"].eq(cluster.node_id("head")).any(), show(trials)
    assert trials["trained_on"].eq("cpu").all(), show(trials)  # no GPU granted, no CUDA


# --------------------------------------------------------------------------- shared storage

MOUNTS = """\
/dev/nvme0n1p1 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0
fs-12345678.efs.us-east-1.amazonaws.com:/ /mnt/shared nfs4 rw,vers=4.1,hard 0 0
/dev/nvme1n1 /mnt/shared/scratch ext4 rw,relatime 0 0
filer:/export/lab /mnt/lab\\040data nfs rw,vers=3 0 0
"""


@pytest.fixture
def fake_mounts(monkeypatch):
    """``/proc/mounts`` of a machine with a local root disk and two network shares."""
    real_read_text = Path.read_text

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if str(self) == "/proc/mounts":
            return MOUNTS
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)


def fake_cluster(monkeypatch, here: str, node_ips: list[str], dead: tuple[str, ...] = ()):
    """``ray.nodes`` and this node's address as on a cluster of ``node_ips``."""
    import ray
    import ray.util

    nodes = [{"NodeManagerAddress": ip, "Alive": True} for ip in node_ips]
    nodes += [{"NodeManagerAddress": ip, "Alive": False} for ip in dead]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: here)


def sweep_at(storage: str):
    return load_sweep(SMOKE, [f"storage={storage}"])


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/home/me/results", "ext4"),
        ("/mnt/shared", "nfs4"),
        ("/mnt/shared/qatsweep/results", "nfs4"),
        ("/mnt/sharedother/results", "ext4"),  # a name that only starts like the share
        ("/mnt/shared/scratch/results", "ext4"),  # a local disk mounted inside the share
        ("/mnt/lab data/qatsweep", "nfs"),  # /proc/mounts writes the space as \040
        ("/dev/shm/results", "tmpfs"),
    ],
)
def test_filesystem_type_takes_the_longest_mount_point(fake_mounts, path, kind):
    from qatsweep.preflight import filesystem_type

    assert filesystem_type(path) == kind


def test_filesystem_type_is_empty_when_mounts_cannot_be_read(monkeypatch):
    from qatsweep.preflight import filesystem_type

    def unreadable(self: Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(str(self))

    monkeypatch.setattr(Path, "read_text", unreadable)
    assert filesystem_type("/anything") == ""


def test_multi_machine_cluster_refuses_a_local_disk(fake_mounts, monkeypatch):
    from qatsweep.preflight import check_shared_storage

    fake_cluster(monkeypatch, "10.0.0.1", ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    with pytest.raises(ConfigError) as raised:
        check_shared_storage(sweep_at("/data/qatsweep"))
    message = str(raised.value)
    assert "/data/qatsweep" in message and "ext4" in message
    assert "2 machine(s)" in message
    assert "--set storage=" in message and "s3://" in message
    assert "\n" not in message  # one line for the CLI


def test_multi_machine_cluster_accepts_nfs_storage(fake_mounts, monkeypatch):
    from qatsweep.preflight import check_shared_storage

    fake_cluster(monkeypatch, "10.0.0.1", ["10.0.0.1", "10.0.0.2"])
    check_shared_storage(sweep_at("/mnt/shared/qatsweep"))


def test_multi_machine_cluster_accepts_object_storage_without_asking_ray(monkeypatch):
    import ray

    from qatsweep.preflight import check_shared_storage

    def no_calls() -> list[dict[str, Any]]:
        raise AssertionError("an s3:// storage needs no look at the cluster")

    monkeypatch.setattr(ray, "nodes", no_calls)
    check_shared_storage(sweep_at("s3://bucket/qatsweep"))
    check_shared_storage(sweep_at("gs://bucket/qatsweep"))


def test_nodes_all_on_this_machine_accept_a_local_disk(fake_mounts, monkeypatch):
    from qatsweep.preflight import check_shared_storage

    # Several nodes, one machine (this module's loopback cluster), and dead nodes elsewhere.
    fake_cluster(monkeypatch, "10.0.0.1", ["10.0.0.1"] * 3, dead=("10.0.0.9",))
    check_shared_storage(sweep_at("/data/qatsweep"))


# --------------------------------------------------------------------------- GPU


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
def test_gpu_sweep_trains_on_cuda(tmp_path):
    """A tiny sweep on local Ray with half a GPU per trial trains on the GPU Ray granted."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_RAY_VARIABLES}
    env["HOME"] = str(home)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "qatsweep",
            "run",
            str(SMOKE),
            "--no-progress",
            "--set",
            f"storage={tmp_path / 'results'}",
            "--set",
            "resources.gpu=0.5",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SWEEP_TIMEOUT,
        check=False,
    )
    assert run.returncode == 0, tail(run.stderr)
    trials = read_trials(tmp_path / "results" / "smoke")
    assert trials["status"].eq("finished").all(), show(trials)
    assert trials["trained_on"].str.startswith("cuda").all(), show(trials)
