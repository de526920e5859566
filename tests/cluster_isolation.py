"""A local two-node Ray cluster whose second node cannot see the workspace (tests import this; it is no test).

``isolated_cluster(workspace)`` starts a head node and a second node; the second one runs in its own mount
namespace (``unshare --mount --propagation private``) where ``workspace`` is bind-mounted over by an empty folder,
while the rest of the filesystem (dataset roots, the venv, /tmp) looks as usual. Only the second node has the
custom resource (``isolated_node`` by default), so work that asks for it runs where the workspace is empty::

    with isolated_cluster(tmp_path / "ws") as cluster:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        ray.get(task.options(resources={cluster.resource: 1}).remote())
        ds.map_batches(Cls, compute=ray.data.ActorPoolStrategy(size=1), resources={cluster.resource: 1})

The driver (this process) stays outside the namespace and sees the real workspace. Both nodes are
``ray start --block`` processes, each the leader of its own session, with a private ``--temp-dir`` and explicit
free ports, so they never touch other Ray instances on the machine (no ``ray stop``). On exit the driver is
disconnected when it is connected to this cluster, each node gets SIGTERM (it tears its processes down), then
whatever is left in its session gets SIGKILL, and the temp folder is removed. The bind mount exists only in the
child namespace, which disappears with its last process. Where the machine forbids unshare/mount the context
manager calls ``pytest.skip(namespace_skip_reason())``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

RAY_BIN = Path(sys.executable).parent / "ray"
START_TIMEOUT_S = 90.0  # both nodes alive within this (about 20 s on a busy 2-core box)
STOP_GRACE_S = 15.0  # per node, after SIGTERM, before SIGKILL


@dataclass(frozen=True)
class IsolatedCluster:
    """What ``isolated_cluster`` yields; ``address`` is what a driver passes to ``ray.init(address=...)``."""

    address: str  # "127.0.0.1:<port>" of the head's GCS
    workspace: Path  # resolved host path; an empty folder for every process of the isolated node
    node_workspace: Path  # host folder the isolated node sees at ``workspace`` (what it writes there lands here)
    resource: str  # custom resource only the isolated node has (1 of it)
    head_node_id: str  # hex ids, as ray.get_runtime_context().get_node_id() reports them
    isolated_node_id: str
    temp_dir: Path  # the cluster's --temp-dir (node logs under session_latest/logs); removed on exit
    session_ids: tuple[int, int]  # (head, isolated node): each `ray start --block` pid leads its node's session


@functools.cache
def namespace_skip_reason() -> str | None:
    """None when ``unshare --mount`` + a bind mount work here, else the exact reason the fixture skips with."""
    if not sys.platform.startswith("linux"):
        return f"isolated_cluster needs Linux mount namespaces (unshare --mount); this platform is {sys.platform}"
    unshare = shutil.which("unshare")
    if unshare is None:
        return "isolated_cluster needs `unshare` (util-linux) on PATH; it is not installed"
    with tempfile.TemporaryDirectory(prefix="ray-iso-probe-") as tmp:
        source, target = Path(tmp, "empty"), Path(tmp, "full")
        source.mkdir()
        target.mkdir()
        (target / "file").touch()
        src, dst = shlex.quote(str(source)), shlex.quote(str(target))
        script = f"mount --bind {src} {dst} && ls -A {dst}"
        try:
            probe = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c", script],
                                   capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`unshare --mount --propagation private` with a bind mount cannot run here: {exc}"
        if probe.returncode != 0:
            why = " ".join((probe.stderr or probe.stdout).split()) or f"exit status {probe.returncode}"
            return f"`unshare --mount --propagation private` with a bind mount is not permitted here: {why}"
        if probe.stdout.strip():
            return "`unshare --mount` ran but its bind mount did not hide the target folder's files"
        if not (target / "file").exists():
            return "the probe's bind mount leaked out of its mount namespace"
    return None


def _free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free right now (held together while picked, so they differ)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _node_port_args() -> list[str]:
    """Fresh ports for one node: the defaults (dashboard agent 52365, ...) would clash between two nodes on one host
    and with other Ray instances on the machine."""
    node_manager, object_manager, agent_listen, agent_grpc, runtime_env, metrics = _free_ports(6)
    return [f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
            f"--dashboard-agent-listen-port={agent_listen}", f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}"]


def _has_ray_client() -> bool:
    from ray._private.utils import get_ray_client_dependency_error

    return get_ray_client_dependency_error() is None


def _die_with_parent() -> None:
    """preexec_fn: the node gets SIGTERM (and tears itself down) if the test process dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def _node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # `ray start` turns token auth on by itself when ~/.ray/auth_token exists (any local ray.init() writes one),
    # while a driver given an explicit address only follows RAY_AUTH_MODE: pin the nodes to this process's mode
    env["RAY_AUTH_MODE"] = os.environ.get("RAY_AUTH_MODE") or "disabled"
    # on SIGTERM a node first drains for up to 30 s, and a head holding detached actors (Ray Data's stats actor)
    # never goes idle: tear down at once
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    return env


def _alive_nodes(gcs) -> list:
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    return list(gcs.get_all_node_info(timeout=5, state_filter=GcsNodeInfo.GcsNodeState.ALIVE).values())


def _failure(what: str, temp_dir: Path, *logs: Path) -> RuntimeError:
    """``what`` with the tails of the CLI output and of the raylet logs (the usual place of the real error)."""
    parts = [what]
    for path in [*logs, *sorted(temp_dir.glob("session_*/logs/raylet*.out"))]:
        with contextlib.suppress(OSError):
            parts.append(f"--- {path.name}:\n{path.read_text(errors='replace')[-2000:]}")
    return RuntimeError("\n".join(parts))


def session_pids(sid: int) -> list[int]:
    """Pids whose session id is ``sid``: a node's processes, incl. workers (they get their own process groups)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp session ...
        if int(fields[3]) == sid and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM a `ray start --block` (it stops its node), then SIGKILL what is left of its session."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE_S)
    deadline = time.monotonic() + 10
    while (left := session_pids(proc.pid)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _disconnect_driver(port: int) -> None:
    """ray.shutdown() when this process's driver is connected to the cluster whose GCS listens on ``port``."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    try:
        connected = ray.get_runtime_context().gcs_address or ""
    except Exception:
        connected = ""
    if not connected or connected.rsplit(":", 1)[-1] == str(port):
        ray.shutdown()


@contextlib.contextmanager
def isolated_cluster(workspace: Path, *, head_cpus: int = 1, worker_cpus: int = 1, resource: str = "isolated_node",
                     object_store_memory: int = 512 * 1024**2) -> Iterator[IsolatedCluster]:
    """A head node (``head_cpus`` CPUs, none of ``resource``) and a node with ``worker_cpus`` CPUs and
    ``{resource: 1}`` whose processes see ``workspace`` (created if missing) as an empty folder.

    Yields an ``IsolatedCluster``; calls ``pytest.skip(namespace_skip_reason())`` where unshare/mount is not
    permitted. Raises RuntimeError (with the nodes' log tails) when a node does not come up."""
    reason = namespace_skip_reason()
    if reason is not None:
        pytest.skip(reason)

    from ray._raylet import GcsClient

    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    # a short path: Ray's unix sockets live under it (108-byte limit), so not under pytest's tmp_path
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-iso-", dir="/tmp"))
    node_workspace = temp_dir / "empty-workspace"
    node_workspace.mkdir()
    cwd = Path.cwd()
    if cwd == workspace or workspace in cwd.parents:
        cwd = temp_dir
    popen = {"stdin": subprocess.DEVNULL, "stderr": subprocess.STDOUT, "env": _node_env(), "cwd": cwd,
             "start_new_session": True, "preexec_fn": _die_with_parent}
    procs: list[subprocess.Popen] = []
    gcs_port, client_port = _free_ports(2)
    address = f"127.0.0.1:{gcs_port}"
    common = ["--block", "--num-gpus=0", "--disable-usage-stats", f"--object-store-memory={int(object_store_memory)}"]
    head_cmd = [str(RAY_BIN), "start", "--head", f"--port={gcs_port}", f"--num-cpus={head_cpus}",
                "--include-dashboard=false", f"--temp-dir={temp_dir}", *common, *_node_port_args()]
    if _has_ray_client():  # without ray[client] Ray starts no client server and refuses the flag
        head_cmd.append(f"--ray-client-server-port={client_port}")  # not the shared default 10001
    worker_cmd = [str(RAY_BIN), "start", f"--address={address}", f"--num-cpus={worker_cpus}",
                  f"--resources={json.dumps({resource: 1})}", *common, *_node_port_args()]
    mount = f"mount --bind {shlex.quote(str(node_workspace))} {shlex.quote(str(workspace))}"
    head_log, worker_log = temp_dir / "head.out", temp_dir / "worker.out"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        with head_log.open("wb") as out:
            procs.append(subprocess.Popen(head_cmd, stdout=out, **popen))
        gcs = None
        while gcs is None:
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise _failure("the Ray head did not start", temp_dir, head_log)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", gcs_port), timeout=1):
                gcs = GcsClient(address=address)
            if gcs is None:
                time.sleep(0.1)
        # the second node joins as soon as the GCS answers, while the head's raylet still starts
        script = f"{mount} && exec {shlex.join(worker_cmd)}"
        with worker_log.open("wb") as out:
            procs.append(subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                          stdout=out, **popen))
        head = isolated = None
        while head is None or isolated is None:
            for proc, name, log in ((procs[0], "the Ray head", head_log), (procs[1], "the isolated node", worker_log)):
                if proc.poll() is not None:
                    raise _failure(f"{name} exited with status {proc.returncode} while starting", temp_dir, log)
            if time.monotonic() > deadline:
                raise _failure(f"the cluster did not have 2 alive nodes within {START_TIMEOUT_S:.0f} s", temp_dir,
                               head_log, worker_log)
            alive = _alive_nodes(gcs)
            head = next((n for n in alive if n.is_head_node), None)
            isolated = next((n for n in alive if n.resources_total.get(resource, 0) > 0), None)
            if head is None or isolated is None:
                time.sleep(0.1)
        yield IsolatedCluster(address=address, workspace=workspace, node_workspace=node_workspace, resource=resource,
                              head_node_id=head.node_id.hex(), isolated_node_id=isolated.node_id.hex(),
                              temp_dir=temp_dir, session_ids=(procs[0].pid, procs[1].pid))
    finally:
        _disconnect_driver(gcs_port)
        for proc in reversed(procs):  # the isolated node first, then the head
            _stop(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
