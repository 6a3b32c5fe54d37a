"""Starting or joining Ray safely.

A local sweep starts an embedded Ray instance sized to the machine, with the dashboard
off. With an address (``--address`` or ``RAY_ADDRESS``) it joins that cluster instead and
leaves its sizing alone (``ray.init`` refuses ``num_cpus`` when joining).

Ray 2.60 turns token authentication on for the clusters ``ray.init()`` starts and writes
the token to ``~/.ray/auth_token`` with the default umask, readable by every user of the
machine. Whoever holds the token can run code on the cluster, so qatsweep creates the
file itself, readable by its owner alone, and tightens an existing one.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from qatsweep.errors import ConfigError

log = logging.getLogger(__name__)


def auth_token_path() -> Path | None:
    """The token file Ray would use, or ``None`` when the token comes from the environment."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    custom = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(custom).expanduser() if custom else Path.home() / ".ray" / "auth_token"


def secure_auth_token(create: bool) -> Path | None:
    """Make the Ray token file private to its owner; create it (private) when asked.

    Returns the file's path, or ``None`` when token authentication is off or the token
    comes from ``RAY_AUTH_TOKEN``.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    path = auth_token_path()
    if path is None:
        return None

    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))  # 256 bits, as Ray's own generator
        log.info("created a private Ray auth token at %s", path)
        return path

    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        try:
            path.chmod(0o600)
        except PermissionError as err:
            raise ConfigError(
                f"the Ray auth token {path} is readable by other users (mode {mode:o}) and "
                "cannot be fixed by this user; run `chmod 600` on it"
            ) from err
        log.warning("the Ray auth token %s was readable by others; now mode 600", path)
    return path


def cluster_address(address: str | None) -> str | None:
    """The cluster to join: ``--address``, else ``RAY_ADDRESS``, else ``None`` (local)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def start_ray(address: str | None = None, **init_kwargs: Any) -> None:
    """Start a local Ray instance, or join the cluster at ``address``.

    Raises:
        ConfigError: the cluster cannot be reached.
    """
    import ray

    address = cluster_address(address)
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "log_to_driver": False,
        "configure_logging": True,
        "logging_level": logging.WARNING,
        **init_kwargs,
    }
    if address is None:
        secure_auth_token(create=True)
        # Ray announces that it turned token authentication on; qatsweep wants it on and
        # has made the token private, so the notice only adds noise.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR
        )
        kwargs.setdefault("include_dashboard", False)
        # The CPUs this process may use (a container's share), not the host's count.
        kwargs.setdefault("num_cpus", len(os.sched_getaffinity(0)))
        log.info("starting a local Ray instance (%d CPUs)", kwargs["num_cpus"])
    else:
        secure_auth_token(create=False)
        kwargs["address"] = address
        log.info("joining the Ray cluster at %s", address)

    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = address or "a local instance"
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot start or reach Ray at {where}: {first_line}") from err
    secure_auth_token(create=False)  # in case Ray wrote the file itself


def stop_ray() -> None:
    """Shut down (or leave) the Ray instance this process started or joined."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
