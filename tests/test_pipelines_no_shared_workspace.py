"""No shared workspace: the model work, the detectors' fit tasks included, runs on a node whose view of the
workspace path is an empty folder (its own mount namespace, tests/cluster_isolation.py), and the outputs and
fitted statistics equal a local run's (oracle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cluster_isolation import isolated_cluster
from folders import imagenet_folder
from PIL import Image

from cood import detectors as det
from pipelines.data.datasets import imagenet1k_wnids, load_folder
from pipelines.engine.detectors import DetectorSettings, fit_all, fit_set_sha256, stats_dir
from pipelines.engine.inference import InferenceOptions, init_ray
from pipelines.engine.outputs import read_outputs
from pipelines.engine.stream import EngineSettings, run_inference
from pipelines.zoo import resolve_all

MODELS = ("timm:test_vit@random", "timm:test_resnet@random")  # two signatures: two pipelines
DETECTORS = DetectorSettings(("mahalanobis", "knn"), "train")


def _images(root: Path) -> Path:
    rng = np.random.default_rng(3)
    for c, wnid in enumerate(imagenet1k_wnids()[:4]):
        (root / wnid).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 256, size=(80 + 10 * c, 100, 3), dtype=np.uint8)).save(
                root / wnid / f"img_{k}.jpg", quality=90
            )
    return root


@pytest.mark.slow
def test_model_work_on_a_node_without_the_workspace_equals_a_local_run(tmp_path):
    import ray

    dataset = load_folder("val", _images(tmp_path / "data" / "val"), "id")  # outside the workspace
    fit_set = load_folder("train", imagenet_folder(tmp_path / "data" / "train", imagenet1k_wnids()[:3], 4), "id")
    models = resolve_all(list(MODELS))
    sha = fit_set_sha256(fit_set)
    opts = InferenceOptions(detectors=DETECTORS.names, detector_fit_sha256=sha)

    def run(workspace: Path, settings: EngineSettings):  # a run with [detectors]: the fit phase, then inference
        fitted = fit_all(models, fit_set, workspace, opts, DETECTORS, sha, engine=settings)
        assert not fitted.errors
        return fitted, run_inference(models, [dataset], workspace, options=opts, settings=settings,
                                     detector_stats=fitted.stats)

    ray.shutdown()
    init_ray(num_cpus=2)
    _, local = run(tmp_path / "local", EngineSettings(num_shards=3))
    ray.shutdown()

    workspace = tmp_path / "ws"
    with isolated_cluster(workspace) as cluster:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        settings = EngineSettings(num_shards=3, model_actors=1, actor_resources={cluster.resource: 1})
        remote_fit, remote = run(workspace, settings)
        ray.shutdown()
        assert not any(cluster.node_workspace.iterdir())  # nothing the node wrote landed under "its" workspace
    assert remote_fit.nodes == {k: cluster.isolated_node_id for k in range(len(models))}  # the fit tasks ran there
    assert remote.model_nodes == {ms.model_id: [cluster.isolated_node_id] for ms in models}  # all model work there
    assert remote.weight_loads == {ms.model_id: 1 for ms in models}  # one resident actor per pipeline
    assert [r.status for r in remote.results] == ["ok"] * len(local.results)
    for ms in models:
        a, b = read_outputs(tmp_path / "local", ms.model_id, "val"), read_outputs(workspace, ms.model_id, "val")
        assert a.sample_ids == b.sample_ids == list(dataset.sample_ids)
        np.testing.assert_array_equal(a.logits, b.logits)
        for name in DETECTORS.names:
            np.testing.assert_array_equal(a.confidences[f"det_{name}"], b.confidences[f"det_{name}"])
            saved = det.stats_to_arrays(det.load_stats(stats_dir(workspace, ms.model_id) / f"{name}.npz"))
            local_saved = det.load_stats(stats_dir(tmp_path / "local", ms.model_id) / f"{name}.npz")
            for key, value in det.stats_to_arrays(local_saved).items():
                np.testing.assert_array_equal(saved[key], value, err_msg=f"{ms.model_id} {name}.{key}")
