"""The isolated_cluster helper itself: a second local Ray node in its own mount namespace sees an empty workspace,
work asking for its resource (tasks and Ray Data actors) runs there, and nothing is left behind afterwards."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from cluster_isolation import isolated_cluster, namespace_skip_reason, session_pids


def _probe(workspace: str, data_file: str) -> dict:
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "listing": sorted(os.listdir(workspace)),
            "data": Path(data_file).read_text()}


class _ActorProbe:
    """A Ray Data callable class: doubles ``x`` and reports where it ran and what it saw."""

    def __init__(self, workspace: str, data_file: str):
        self.seen = _probe(workspace, data_file)

    def __call__(self, batch: dict) -> dict:
        n = len(batch["x"])
        return {"x2": batch["x"] * 2, "node": [self.seen["node"]] * n, "pid": [os.getpid()] * n,
                "listing": [",".join(self.seen["listing"])] * n, "data": [self.seen["data"]] * n}


def _mounted_on_host(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())


@pytest.mark.slow
def test_isolated_node_sees_an_empty_workspace_and_takes_the_work_that_asks_for_it(tmp_path):
    import ray

    data_file = tmp_path / "data" / "n01440764" / "labels.txt"  # a dataset root outside the workspace
    data_file.parent.mkdir(parents=True)
    data_file.write_text("tench\n")
    workspace = tmp_path / "ws"
    (workspace / "outputs").mkdir(parents=True)
    (workspace / "outputs" / "done.parquet").write_bytes(b"x")
    args = (str(workspace), str(data_file))

    # tests/ is no package and not on the workers' sys.path: ship this module's functions and classes by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.shutdown()
    started = time.monotonic()
    with isolated_cluster(workspace) as cluster:
        startup_s = time.monotonic() - started
        assert cluster.workspace == workspace.resolve()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        alive = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
        assert set(alive) == {cluster.head_node_id, cluster.isolated_node_id}
        assert alive[cluster.isolated_node_id]["Resources"].get(cluster.resource) == 1
        assert cluster.resource not in alive[cluster.head_node_id]["Resources"]
        assert ray.get_runtime_context().get_node_id() == cluster.head_node_id  # the driver is on the host side

        probe = ray.remote(num_cpus=1)(_probe)
        isolated = ray.get(probe.options(resources={cluster.resource: 1}).remote(*args))
        assert isolated == {"node": cluster.isolated_node_id, "listing": [], "data": "tench\n"}
        on_head = ray.get(probe.remote(*args))
        assert on_head == {"node": cluster.head_node_id, "listing": ["outputs"], "data": "tench\n"}
        assert sorted(os.listdir(workspace)) == ["outputs"]  # the driver sees the real workspace

        # what the isolated node writes "into the workspace" never reaches the host's workspace
        @ray.remote(resources={cluster.resource: 1})
        def write(path: str) -> list[str]:
            Path(path, "from-node.txt").write_text("hidden")
            return sorted(os.listdir(path))

        assert ray.get(write.remote(str(workspace))) == ["from-node.txt"]
        assert sorted(os.listdir(workspace)) == ["outputs"]
        assert sorted(os.listdir(cluster.node_workspace)) == ["from-node.txt"]

        # Ray Data: the actor pool asks for the node's resource, so its actor lives there; rows come back
        ds = ray.data.from_items([{"x": i} for i in range(10)]).map_batches(
            _ActorProbe, fn_constructor_args=args, batch_size=4, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1, resources={cluster.resource: 1})
        rows = sorted(ds.take_all(), key=lambda r: r["x2"])
        assert [r["x2"] for r in rows] == [2 * i for i in range(10)]
        assert {r["node"] for r in rows} == {cluster.isolated_node_id}
        assert {r["listing"] for r in rows} == {"from-node.txt"}  # the node's view, not the host's "outputs"
        assert {r["data"] for r in rows} == {"tench\n"}
        assert len({r["pid"] for r in rows}) == 1  # one actor
        stopping = time.monotonic()
    stop_s = time.monotonic() - stopping

    assert not ray.is_initialized()  # the helper disconnected the driver before stopping the nodes
    assert not cluster.temp_dir.exists()
    assert [session_pids(sid) for sid in cluster.session_ids] == [[], []]
    assert not _mounted_on_host(workspace.resolve())
    assert sorted(os.listdir(workspace)) == ["outputs"]
    assert startup_s < 90 and stop_s < 40, (startup_s, stop_s)


def test_skips_with_the_reason_where_mount_namespaces_are_forbidden(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "unshare"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    namespace_skip_reason.cache_clear()
    try:
        reason = ("`unshare --mount --propagation private` with a bind mount is not permitted here: "
                  "unshare: unshare failed: Operation not permitted")
        assert namespace_skip_reason() == reason
        with pytest.raises(pytest.skip.Exception, match="not permitted here"), isolated_cluster(tmp_path / "ws"):
            pytest.fail("the body must not run")
        assert not (tmp_path / "ws").exists()  # skipped before touching anything
    finally:
        namespace_skip_reason.cache_clear()
