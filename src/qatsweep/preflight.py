"""Checks a sweep passes before anything starts: resources, and where results can go.

Each refuses with a ``ConfigError`` that says what to change, before Ray starts or a file
is written; on a cluster, a trial no node can hold yet only warns, since an autoscaler
may add such a node.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from qatsweep.errors import ConfigError
from qatsweep.sweep_config import SweepConfig

log = logging.getLogger(__name__)


def _local_resources(sweep: SweepConfig) -> dict[str, float]:
    """What a local Ray instance will have: every CPU, and the visible GPUs."""
    available = {"CPU": float(len(os.sched_getaffinity(0))), "GPU": 0.0}
    wants_gpu = any(sweep.resources.for_point(p).gpu > 0 for p in sweep.points())
    if wants_gpu:  # only then pay for importing torch here
        try:
            import torch

            available["GPU"] = float(torch.cuda.device_count())
        except Exception:  # noqa: BLE001 - no usable CUDA means no GPUs for Ray either
            pass
    return available


def unplaceable(sweep: SweepConfig, nodes: list[dict[str, float]]) -> str | None:
    """Why some grid point fits on none of ``nodes``, or ``None`` when all fit."""
    for point in sweep.points():
        request = sweep.resources.for_point(point).ray_request()
        if any(all(node.get(k, 0.0) >= v for k, v in request.items()) for node in nodes):
            continue
        most = {k: max((node.get(k, 0.0) for node in nodes), default=0.0) for k in request}
        short = next(k for k, v in request.items() if most[k] < v)
        name = {"CPU": "cpu", "GPU": "gpu"}.get(short, f"custom.{short}")
        return (
            f"resources.{name}: trial {point} asks for {request[short]:g} {short} on one node, "
            f"but the largest node has {most[short]:g}"
        )
    return None


def check_local_resources(sweep: SweepConfig) -> None:
    """A local instance is one node of this machine's size: refuse what cannot fit."""
    problem = unplaceable(sweep, [_local_resources(sweep)])
    if problem is not None:
        raise ConfigError(f"{problem}; lower the request or run on a cluster (--address)")


def check_cluster_resources(sweep: SweepConfig) -> None:
    """On a cluster, a trial no node can hold waits: say so, as an autoscaler may add one."""
    import ray

    nodes = [
        {k: float(v) for k, v in node.get("Resources", {}).items()}
        for node in ray.nodes()
        if node.get("Alive")
    ]
    problem = unplaceable(sweep, nodes)
    if problem is not None:
        log.warning("%s now; such trials wait until a node that can hold them joins", problem)


#: Filesystems that every node of a cluster can mount: storage there is shared.
NETWORK_FILESYSTEMS = {
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "lustre",
    "gpfs",
    "beegfs",
    "fuse.sshfs",
    "fuse.s3fs",
    "fuse.gcsfuse",
    "fuse.juicefs",
    "fuse.cephfs",
    "fuse.lustre",
}


def filesystem_type(path: str) -> str:
    """The type of the filesystem ``path`` lies on, from ``/proc/mounts`` (``""`` if unknown)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    best, kind = "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts writes space, tab, newline and backslash as octal escapes.
        mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, kind = mount_point, fields[2]
    return kind


def check_shared_storage(sweep: SweepConfig) -> None:
    """On a cluster of several machines, refuse storage only this machine can reach.

    Ray refuses a head-local ``storage_path`` once trials run elsewhere, deep into the
    sweep; qatsweep says so before anything starts. A cluster whose nodes all run on this
    machine shares its disk, so any local path works there.
    """
    if sweep.storage_is_uri:
        return
    import ray

    here = ray.util.get_node_ip_address()
    machines = {node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")}
    if machines <= {here}:
        return
    path = sweep.resolved_storage()
    kind = filesystem_type(path)
    if kind not in NETWORK_FILESYSTEMS:
        raise ConfigError(
            f"storage {path} is on this machine's own disk ({kind or 'unknown filesystem'}), "
            f"which the cluster's other {len(machines) - 1} machine(s) cannot write; use "
            "shared storage: --set storage=/mnt/nfs/qatsweep or --set storage=s3://bucket/prefix"
        )


def check_storage_writable(sweep: SweepConfig) -> None:
    """Refuse a local storage path that cannot hold a directory, before anything starts."""
    if sweep.storage_is_uri:
        return
    path = Path(sweep.resolved_storage())
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"storage {path}: cannot create directories under {existing} "
            "(not a writable directory); choose another with --set storage=PATH"
        )


def check_storage_is_absolute(sweep: SweepConfig) -> None:
    """On a cluster, refuse a relative storage path.

    Inside a Ray job the working directory is a temporary copy that Ray deletes, so a
    relative path would put the results where they are lost.
    """
    if sweep.storage_is_uri:
        return
    if not Path(sweep.storage.removeprefix("file://")).expanduser().is_absolute():
        raise ConfigError(
            f"storage {sweep.storage!r} is a relative path; on a cluster give shared storage "
            "explicitly, e.g. --set storage=/mnt/nfs/qatsweep or --set storage=s3://bucket/prefix"
        )
