"""Ray inference at small scale: decode once, exactness, failures, bad files, resumption, 2-node clusters."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from pipelines.data.datasets import imagenet1k_wnids, load_folder
from pipelines.engine.inference import FAULT_ENV, InferenceOptions, init_ray, run_inference
from pipelines.engine.outputs import read_outputs
from pipelines.zoo import build_model, resolve_all

SHARED_SIGNATURE = ("timm:test_vit@random", "timm:test_efficientnet@random", "timm:test_convnext@random")
WNIDS = imagenet1k_wnids()[:3]


def _make_images(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    """Random-noise photos of varied sizes in the ImageNet folder layout."""
    rng = np.random.default_rng(seed)
    for c, wnid in enumerate(WNIDS):
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            h, w = rng.integers(120, 300, size=2)
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            pixels[..., c] //= 2  # a little class structure
            Image.fromarray(pixels).save(root / wnid / f"img_{k}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.shutdown()
    init_ray(num_cpus=2)
    yield
    ray.shutdown()


def test_decode_once_and_logits_match_per_model_timm_transforms(tmp_path, local_ray):
    from timm.data import create_transform

    dataset = load_folder("val", _make_images(tmp_path / "val"), "id")
    models = resolve_all(list(SHARED_SIGNATURE))
    assert len({m.preprocess.signature for m in models}) == 1
    report = run_inference(models, [dataset], tmp_path / "ws", shard_size=5)
    assert [r.status for r in report.results] == ["ok"] * len(report.results)
    assert report.decoded == len(dataset)  # each image decoded exactly once for three models
    assert [r.attempts for r in report.results] == [1] * len(report.results)
    assert not list((tmp_path / "ws").glob(".attempts-*"))  # the attempt log is removed at the end
    assert not list((tmp_path / "ws" / "cache").rglob("shard-*"))  # every model succeeded: the crops are freed
    for ms in models:
        out = read_outputs(tmp_path / "ws", ms.model_id, "val")
        assert out.sample_ids == list(dataset.sample_ids)
        pre = ms.preprocess
        transform = create_transform(
            input_size=(3, pre.input_size, pre.input_size), is_training=False, interpolation=pre.interpolation,
            mean=pre.mean, std=pre.std, crop_pct=pre.crop_pct, crop_mode=pre.crop_mode,
        )
        model = build_model(ms)
        batch = torch.stack([transform(Image.open(dataset.path(i)).convert("RGB")) for i in range(len(dataset))])
        with torch.inference_mode():
            reference = model(batch).numpy()
        np.testing.assert_allclose(out.logits, reference, atol=1e-5, rtol=0)


def test_failing_model_truncated_jpeg_and_rerun(tmp_path, local_ray):
    root = _make_images(tmp_path / "val")
    victim = root / WNIDS[1] / "img_2.jpg"
    victim.write_bytes(victim.read_bytes()[:300])  # truncated JPEG
    dataset = load_folder("val", root, "id")
    # pretrained timm weights cannot be fetched offline (HF_HUB_OFFLINE=1 in conftest): that model must fail alone
    models = resolve_all(["timm:test_vit@random", "timm:test_vit.r160_in1k"])
    report = run_inference(models, [dataset], tmp_path / "ws", shard_size=100)
    by_model = {r.model_id: r for r in report.results}
    good, bad = by_model["timm-test_vit-random"], by_model["timm-test_vit.r160_in1k"]
    assert good.status == "ok" and good.n_samples == len(dataset) - 1
    assert bad.status == "failed" and "pretrained weights" in bad.error
    assert good.attempts == bad.attempts == 1  # a model's own error is not retried
    assert [sid for sid, _ in good.bad_files] == [f"{WNIDS[1]}/img_2.jpg"]
    out = read_outputs(tmp_path / "ws", good.model_id, "val")
    assert f"{WNIDS[1]}/img_2.jpg" not in out.sample_ids and len(out) == len(dataset) - 1
    # a model of the shard failed: its crops stay cached for the rerun (the signature is shared by both)
    assert len(list((tmp_path / "ws" / "cache").rglob("shard-*.json"))) == 1

    again = run_inference(models[:1], [dataset], tmp_path / "ws", shard_size=100)
    assert [r.status for r in again.results] == ["skipped_existing"] and again.decoded == 0
    assert again.results[0].attempts == 0


def test_attempt_log_counts_each_execution(tmp_path):
    from pipelines.engine.inference import attempts_made, record_attempt

    assert attempts_made(tmp_path, "m", "val", 0) == 0
    assert [record_attempt(tmp_path, "m", "val", 0) for _ in range(3)] == [1, 2, 3]
    assert attempts_made(tmp_path, "m", "val", 0) == 3
    assert attempts_made(tmp_path, "m", "val", 1) == attempts_made(tmp_path, "other", "val", 0) == 0
    assert record_attempt(tmp_path / "gone", "m", "val", 0) is None  # never fails the task


def test_oom_halves_the_batch():
    from pipelines.engine.inference import _forward_all

    (ms,) = resolve_all(["timm:test_vit@random"])
    model = build_model(ms)
    calls = []

    def flaky(x):
        calls.append(len(x))
        if len(x) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return model(x)

    crops = np.zeros((5, 160, 160, 3), np.uint8)
    logits, extra, batch = _forward_all(flaky, crops, ms, InferenceOptions(batch_size=8), "cpu")
    assert logits.shape == (5, 1000) and batch == 2 and extra == {}
    assert calls[:3] == [5, 4, 2]


def _local_reference(tmp_path: Path, per_class: int, shard_size: int):
    """(dataset, models, report) of a plain local run into ``tmp_path / "local"``, the reference for cluster runs."""
    dataset = load_folder("val", _make_images(tmp_path / "val", per_class=per_class), "id")
    models = resolve_all(list(SHARED_SIGNATURE[:2]))
    import ray

    ray.shutdown()
    init_ray(num_cpus=2)
    local = run_inference(models, [dataset], tmp_path / "local", shard_size=shard_size)
    ray.shutdown()
    return dataset, models, local


def _assert_same_outputs(reference: Path, other: Path, models) -> None:
    """Every model's outputs in ``other`` are complete, each sample once, with the reference's logits."""
    for ms in models:
        a = read_outputs(reference, ms.model_id, "val")
        b = read_outputs(other, ms.model_id, "val")
        assert a.sample_ids == b.sample_ids == sorted(set(b.sample_ids))
        np.testing.assert_array_equal(a.logits, b.logits)


@pytest.mark.slow
def test_two_node_cluster_matches_local_and_survives_a_killed_worker(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    dataset, models, local = _local_reference(tmp_path, per_class=3, shard_size=4)

    marker = tmp_path / "killed-once"
    os.environ[FAULT_ENV] = str(marker)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        remote = run_inference(models, [dataset], tmp_path / "cluster", shard_size=4)
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.pop(FAULT_ENV)
    assert marker.exists()  # one worker really died mid-task and the task was retried
    assert sorted(r.attempts for r in remote.results) == [1] * (len(remote.results) - 1) + [2]
    assert sorted(r.status for r in remote.results) == sorted(r.status for r in local.results)
    _assert_same_outputs(tmp_path / "local", tmp_path / "cluster", models)  # complete, no duplicates
    for ms in models:
        files = sorted((tmp_path / "cluster" / "outputs" / f"model={ms.model_id}" / "dataset=val").glob("*.parquet"))
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == len(dataset)


@pytest.mark.slow
def test_removing_a_node_mid_run_then_rerunning_completes_without_duplicates(tmp_path):
    """A worker node disappears while tasks run: Ray retries them elsewhere (or they are recorded as failed),
    and a rerun fills whatever is missing; every output is complete, exactly once, and equal to a local run."""
    import threading

    import ray
    from ray.cluster_utils import Cluster

    dataset, models, local = _local_reference(tmp_path, per_class=4, shard_size=2)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2)
    workspace = tmp_path / "cluster"
    outcome: dict[str, object] = {}
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)

        def run() -> None:
            try:
                outcome["report"] = run_inference(models, [dataset], workspace, shard_size=2)
            except Exception as exc:  # the assertion below shows it
                outcome["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        outputs = workspace / "outputs"
        deadline = time.monotonic() + 120
        while not list(outputs.rglob("*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)
        cluster.remove_node(worker, allow_graceful=False)  # mid-run: some shards are done, others are not
        done_at_removal = len(list(outputs.rglob("*.parquet")))
        thread.join(timeout=300)
        assert not thread.is_alive(), "the run did not finish after the node was removed"
        assert "error" not in outcome, outcome.get("error")
        again = run_inference(models, [dataset], workspace, shard_size=2)
        assert all(r.status in ("ok", "skipped_existing") for r in again.results)
    finally:
        ray.shutdown()
        cluster.shutdown()
    _assert_same_outputs(tmp_path / "local", workspace, models)
    assert len(local.results) == len(again.results)
    assert 0 < done_at_removal < len(local.results)  # the node really went away mid-run


@pytest.mark.slow
def test_a_local_run_starts_its_own_ray_even_when_a_cluster_runs_on_the_machine():
    """Ray's plain init() joins a `ray start` cluster found on the machine and then refuses num_cpus; a run
    without an address must start its own instance (oracle: it has exactly the CPUs it asked for and is not
    the other cluster's head)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3})
    try:
        init_ray(num_cpus=1)
        assert ray.cluster_resources().get("CPU") == 1
        assert ray.get_runtime_context().gcs_address != cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()
