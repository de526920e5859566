"""The detectors' fit phase on the Ray cluster (pipelines.engine.detectors.fit_all): the in-flight rule of the
feature budget (hand-computed), statistics equal to the in-process path's (oracle: the same pure function run in
this process), a model whose weights are missing failing alone, and the driver saving what the tasks return."""

from __future__ import annotations

import numpy as np
import pytest
from folders import imagenet_folder

from cood import detectors as det
from pipelines.data.datasets import imagenet1k_wnids, load_folder
from pipelines.engine.detectors import (
    PROGRESS_STAGE,
    DetectorSettings,
    fit_all,
    fit_concurrency,
    fit_set_sha256,
    stats_dir,
)


@pytest.mark.parametrize(
    ("budget", "measured", "limit"),
    [
        (1000, [], 1),  # nothing measured yet: one at a time
        (1000, [300], 3),  # 1000 // 300
        (1000, [300, 450], 2),  # the largest measured so far: 1000 // 450
        (1000, [450, 300], 2),  # whatever the order they finished in
        (1000, [1000], 1),
        (1000, [2000], 1),  # over budget alone (that model failed its own check): still one at a time, never 0
        (1000, [0], 1),  # no features held: unknown, one at a time
        # the default 1 GiB budget and 10k fit images × 2,048 dims float32 (81.92 MB) per model: 13 × 81.92 MB =
        # 1,064.96 MB ≤ 1,073.74 MB < 14 × 81.92 MB
        (1 << 30, [10_000 * 2048 * 4], 13),
        (1 << 30, [100_000 * 2048 * 4], 1),  # 819.2 MB per model: one at a time
    ],
)
def test_fit_concurrency_keeps_the_features_in_flight_within_the_budget(budget, measured, limit):
    assert fit_concurrency(budget, measured) == limit


def _arrays(stats) -> dict[str, np.ndarray]:
    return det.stats_to_arrays(stats)


@pytest.mark.slow
def test_cluster_fit_equals_in_process_fit_and_a_model_without_weights_fails_alone(tmp_path):
    import ray
    import torch

    from pipelines.engine.inference import InferenceOptions, init_ray
    from pipelines.zoo import resolve_all

    fit_set = load_folder("train", imagenet_folder(tmp_path / "train", imagenet1k_wnids()[:3], per_class=4), "id")
    # pretrained timm weights cannot be fetched offline (HF_HUB_OFFLINE=1): that model fails in its task
    models = resolve_all(["timm:test_vit@random", "timm:test_vit.r160_in1k"])
    opts = InferenceOptions(batch_size=5, device="cpu")
    settings = DetectorSettings(("mahalanobis", "knn", "vim"), "train", params={"vim": {"dim": 8}})
    sha = fit_set_sha256(fit_set)

    ray.shutdown()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the fit task's thread count (opts.threads): same arithmetic, equal arrays
    try:
        local = fit_all(models, fit_set, tmp_path / "local", opts, settings, sha)
    finally:
        torch.set_num_threads(threads)
    assert sorted(local.stats) == [0] and sorted(local.errors) == [1] and not local.nodes

    init_ray(num_cpus=2)
    try:
        lines, progress = [], []
        remote = fit_all(models, fit_set, tmp_path / "ws", opts, settings, sha, on_line=lines.append,
                         on_progress=lambda *p: progress.append(p))
        node = ray.get_runtime_context().get_node_id()
        assert isinstance(remote.stats[0], ray.ObjectRef)  # held in the object store, not in the driver
        remote_stats = ray.get(remote.stats[0])
    finally:
        ray.shutdown()
    assert remote.nodes == {0: node}  # fitted by a task, not in this process
    assert sorted(remote.stats) == [0] and sorted(remote.errors) == [1]
    error = remote.errors[1]
    assert error == local.errors[1] and "pretrained weights" in error and "\n" not in error
    assert f"detectors: {models[1].model_id} failed: {error}" in lines
    assert [line for line in lines if "fitted" in line] == [
        f"detectors: {models[0].model_id} {name} fitted (not fitted yet)" for name in settings.names
    ]
    assert progress[0] == (PROGRESS_STAGE, 0, 2) and progress[-1] == (PROGRESS_STAGE, 2, 2) and len(progress) == 3
    for name in settings.names:
        got, expected = _arrays(remote_stats[name]), _arrays(local.stats[0][name])
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{name}.{key}")
        # the driver saved what the task returned, with the identity it was fitted under
        saved = _arrays(det.load_stats(stats_dir(tmp_path / "ws", models[0].model_id) / f"{name}.npz"))
        for key in expected:
            np.testing.assert_array_equal(saved[key], expected[key])
        assert (stats_dir(tmp_path / "ws", models[0].model_id) / f"{name}.json").is_file()
    assert not stats_dir(tmp_path / "ws", models[1].model_id).exists()

    # stored under the same identity: reused without any task (Ray is not even running now)
    again = fit_all(models[:1], fit_set, tmp_path / "ws", opts, settings, sha)
    assert again.lines == [f"detectors: {models[0].model_id} {name} reused" for name in settings.names]
    assert not again.nodes
