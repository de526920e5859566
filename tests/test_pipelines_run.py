"""The run engine at small scale: decode once, exactness, failures, bad files, output identity, 2-node clusters."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from folders import timm_eval_batch
from PIL import Image

from pipelines.data.datasets import imagenet1k_wnids, load_folder
from pipelines.engine.inference import FAULT_ENV, InferenceOptions, init_ray
from pipelines.engine.outputs import read_outputs
from pipelines.engine.stream import EngineSettings, run_inference
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
    dataset = load_folder("val", _make_images(tmp_path / "val"), "id")
    models = resolve_all(list(SHARED_SIGNATURE))
    assert len({m.preprocess.signature for m in models}) == 1
    settings = EngineSettings(num_shards=2, model_actors=1)
    report = run_inference(models, [dataset], tmp_path / "ws", settings=settings)
    assert [r.status for r in report.results] == ["ok"] * len(report.results)
    assert report.decoded == len(dataset)  # each image decoded exactly once for three models
    assert report.weight_loads == {ms.model_id: 1 for ms in models}  # one actor holds all three, loaded once
    assert report.signatures == 1
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == ["outputs"]  # no cache, no temp folders
    for ms in models:
        out = read_outputs(tmp_path / "ws", ms.model_id, "val")
        assert out.sample_ids == list(dataset.sample_ids)
        model = build_model(ms)
        batch = timm_eval_batch(ms, dataset)
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
    report = run_inference(models, [dataset], tmp_path / "ws", settings=EngineSettings(num_shards=1))
    by_model = {r.model_id: r for r in report.results}
    good, bad = by_model["timm-test_vit-random"], by_model["timm-test_vit.r160_in1k"]
    assert good.status == "ok" and good.n_samples == len(dataset) - 1
    assert bad.status == "failed" and "pretrained weights" in bad.error
    assert [sid for sid, _ in good.bad_files] == [f"{WNIDS[1]}/img_2.jpg"]
    out = read_outputs(tmp_path / "ws", good.model_id, "val")
    assert f"{WNIDS[1]}/img_2.jpg" not in out.sample_ids and len(out) == len(dataset) - 1

    again = run_inference(models[:1], [dataset], tmp_path / "ws", settings=EngineSettings(num_shards=1))
    assert [r.status for r in again.results] == ["reused"] and again.decoded == 0
    assert again.results[0].bad_files == good.bad_files  # the manifest keeps the shard's bad files


def test_oom_halves_the_batch():
    from pipelines.engine.inference import forward_all

    (ms,) = resolve_all(["timm:test_vit@random"])
    model = build_model(ms)
    calls = []

    def flaky(x):
        calls.append(len(x))
        if len(x) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return model(x)

    crops = np.zeros((5, 160, 160, 3), np.uint8)
    flaky.parameters = model.parameters  # forward_all reads the device from the model's parameters
    logits, extra, batch = forward_all(flaky, crops, ms, InferenceOptions(batch_size=8))
    assert logits.shape == (5, 1000) and batch == 2 and extra == {}
    assert calls[:3] == [5, 4, 2]


def _local_reference(tmp_path: Path, per_class: int, num_shards: int):
    """(dataset, models, report) of a plain local run into ``tmp_path / "local"``, the reference for cluster runs."""
    dataset = load_folder("val", _make_images(tmp_path / "val", per_class=per_class), "id")
    models = resolve_all(list(SHARED_SIGNATURE[:2]))
    import ray

    ray.shutdown()
    init_ray(num_cpus=2)
    local = run_inference(models, [dataset], tmp_path / "local", settings=EngineSettings(num_shards=num_shards))
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

    dataset, models, local = _local_reference(tmp_path, per_class=3, num_shards=3)

    marker = tmp_path / "killed-once"
    os.environ[FAULT_ENV] = str(marker)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        remote = run_inference(
            models, [dataset], tmp_path / "cluster", settings=EngineSettings(num_shards=3, model_actors=2)
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.pop(FAULT_ENV)
    assert marker.exists()  # one model actor really died while loading and was restarted
    assert sorted(r.status for r in remote.results) == sorted(r.status for r in local.results)
    assert all(count <= 3 for count in remote.weight_loads.values())  # 2 actors + the restarted one
    _assert_same_outputs(tmp_path / "local", tmp_path / "cluster", models)  # complete, no duplicates
    for ms in models:
        files = sorted((tmp_path / "cluster" / "outputs" / f"model={ms.model_id}" / "dataset=val").glob("*.parquet"))
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == len(dataset)


@pytest.mark.slow
def test_removing_a_node_mid_run_then_rerunning_completes_without_duplicates(tmp_path):
    """A worker node disappears while tasks run: Ray retries them elsewhere (or they are recorded as failed),
    and a rerun fills whatever is missing; every output is complete, exactly once, and equal to a local run."""

    import ray
    from ray.cluster_utils import Cluster

    dataset, models, local = _local_reference(tmp_path, per_class=4, num_shards=3)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2)
    workspace = tmp_path / "cluster"
    removed_at: list[int] = []

    def remove_after_first_block(stage: str, done: int, total: int) -> None:
        if 0 < done < total and not removed_at:  # mid-run: some rows are in, others are not
            cluster.remove_node(worker, allow_graceful=False)
            removed_at.append(done)

    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        first = run_inference(
            models, [dataset], workspace, settings=EngineSettings(num_shards=3), on_progress=remove_after_first_block
        )
        assert removed_at, "the node was never removed mid-run"
        assert {r.status for r in first.results} <= {"ok", "failed"}
        again = run_inference(models, [dataset], workspace, settings=EngineSettings(num_shards=3))
        assert all(r.status in ("ok", "reused") for r in again.results)
    finally:
        ray.shutdown()
        cluster.shutdown()
    _assert_same_outputs(tmp_path / "local", workspace, models)
    assert len(local.results) == len(again.results)


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
