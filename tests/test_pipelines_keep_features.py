"""[detectors] keep_features: config, the storage budget (estimated before the run, one-line refusal), and a small
`uebench run` whose stored float16 features equal the model's pre-logit features computed here independently
(timm's own eval transform, forward_features / forward_head(pre_logits=True), cast to float16); without
keep_features nothing is stored; missing, damaged or foreign feature files are recomputed and the rerun says why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from folders import imagenet_folder, timm_eval_batch

from pipelines.data.datasets import imagenet1k_wnids, load_folder
from pipelines.engine.run_config import parse_config
from pipelines.errors import UserError

WNIDS = imagenet1k_wnids()[:3]
MODEL = "timm:test_vit@random"  # D = 64
MODEL_ID = "timm-test_vit-random"

BASE = {"models": ["m"], "datasets": {"v": {"kind": "id", "root": "x"}, "t": {"kind": "fit", "root": "y"}}}


def test_config_keeps_no_features_by_default_and_reads_the_budget(tmp_path):
    plain = parse_config({**BASE, "detectors": {"names": ["knn"], "fit": "t"}}, tmp_path)
    assert plain.inference.keep_features is False and plain.inference.feature_storage_bytes == 64 << 30
    kept = parse_config(
        {**BASE, "detectors": {"names": ["knn"], "fit": "t", "keep_features": True, "feature_storage_gib": 1.5}},
        tmp_path,
    )
    assert kept.inference.keep_features is True and kept.inference.feature_storage_bytes == 3 << 29


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"keep_features": "yes"}, "[detectors] keep_features must be true or false"),
        ({"feature_storage_gib": 0}, "[detectors] feature_storage_gib must be a number of GiB > 0"),
        ({"feature_storage_gib": "64"}, "[detectors] feature_storage_gib must be a number of GiB > 0"),
    ],
)
def test_bad_keep_features_configs_name_the_problem(tmp_path, extra, message):
    with pytest.raises(UserError) as caught:
        parse_config({**BASE, "detectors": {"names": ["knn"], "fit": "t", **extra}}, tmp_path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_feature_width_is_what_the_extractor_returns():
    """D read on the meta device equals the width of the features the built model returns (MobileNetV3: its
    1,024-wide head layer, not timm's num_features = 576)."""
    from pipelines.engine.inference import feature_width
    from pipelines.zoo import build_model, resolve_all
    from pipelines.zoo.features import feature_extractor

    for spec in ("timm:test_vit@random", "timm:mobilenetv3_small_100@random", "torchvision:resnet18@random"):
        (ms,) = resolve_all([spec])
        size = ms.preprocess.input_size
        with torch.no_grad():
            _, features = feature_extractor(build_model(ms), ms.source)(torch.zeros((1, 3, size, size)))
        assert feature_width(ms) == features.shape[1], spec
    (mobilenet,) = resolve_all(["timm:mobilenetv3_small_100@random"])
    assert feature_width(mobilenet) == 1024


def test_storage_budget_is_the_sum_over_models_of_images_times_width_in_fp16(tmp_path):
    from pipelines.engine.stream import check_feature_storage
    from pipelines.zoo import resolve_all

    models = resolve_all(["timm:test_vit@random", "timm:mobilenetv3_small_100@random"])
    val = load_folder("val", imagenet_folder(tmp_path / "val", WNIDS, per_class=2), "id")
    ood = load_folder("ood", imagenet_folder(tmp_path / "ood", imagenet1k_wnids()[3:5], per_class=3), "ood")
    need = (6 + 6) * (64 + 1024) * 2  # images × Σ D × 2 bytes, by hand
    assert check_feature_storage(models, [val, ood], need) == need
    with pytest.raises(UserError) as caught:
        check_feature_storage(models, [val, ood], need - 1)
    message = str(caught.value)
    assert "\n" not in message and "2 model(s) × 12 images" in message
    assert "widest D = 1024, timm-mobilenetv3_small_100-random" in message and "feature_storage_gib" in message


def test_fp16_features_round_trip_through_parquet_exactly(tmp_path):
    """The stored column is Parquet's Float16 type; read_features widens it to float32 exactly (oracle: numpy's
    own float16 -> float32 cast), in sample_id order, and refuses features not written with the stored output."""
    from pipelines.engine import identity
    from pipelines.engine.outputs import ShardWriter, feature_path, feature_table, read_features, shard_path

    rng = np.random.default_rng(0)
    values = (rng.standard_normal((5, 7)) * 100).astype(np.float16)
    ids = ["b/2", "a/1", "c/3", "a/0", "b/9"]
    writer = ShardWriter(feature_path(tmp_path, "m", "d", 0))
    writer.write(feature_table(ids, values))
    path = writer.commit()
    element = pq.read_schema(path).field("features").type.value_type
    assert element == pa.float16()
    output = shard_path(tmp_path, "m", "d", 0)
    output.parent.mkdir(parents=True)
    output.write_bytes(b"stand-in output")
    written = identity.write_manifest(output, {"shard": 0}, {})
    identity.write_manifest(path, {"shard": 0}, {"output_sha256": written["parquet_sha256"]})
    got_ids, got = read_features(tmp_path, "m", "d")
    order = np.argsort(ids)
    assert got_ids == sorted(ids) and got.dtype == np.float32
    np.testing.assert_array_equal(got, values[order].astype(np.float32))
    output.write_bytes(b"another output")
    identity.write_manifest(output, {"shard": 0}, {})
    with pytest.raises(UserError, match="were not written with the outputs stored now"):
        read_features(tmp_path, "m", "d")


# -- end to end ------------------------------------------------------------------------------------------------


def _uebench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, timeout=600)


def _write_config(tmp_path: Path, keep: bool, storage_gib: float = 64) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(
        f'models = ["{MODEL}"]\nanalyses = ["cood"]\nseed = 5\n'
        '[datasets.val]\nkind = "id"\nroot = "val"\n'
        '[datasets.ood]\nkind = "ood"\nroot = "ood"\nper_class = 6\nn_estimation = 4\n'
        '[datasets.train]\nkind = "fit"\nroot = "train"\n'
        '[detectors]\nnames = ["mahalanobis"]\nfit = "train"\n'
        f'keep_features = {json.dumps(keep)}\nfeature_storage_gib = {storage_gib}\n'
        '[cood]\nwindow = 2\nlevels = 3\n'
        '[ray]\nnum_cpus = 2\n'
        '[inference]\nbatch_size = 8\nshards = 2\n'
    )
    return path


def _oracle(ms, dataset) -> np.ndarray:
    """The model's pre-logit features of every image, independently: timm's eval transform, then timm's
    forward_features / forward_head(pre_logits=True), float32."""
    from pipelines.zoo import build_model

    model = build_model(ms)
    with torch.inference_mode():
        return model.forward_head(model.forward_features(timm_eval_batch(ms, dataset)), pre_logits=True).numpy()


def test_run_keeps_fp16_features_verified_with_the_outputs(tmp_path):
    from pipelines.demo.data import OOD_PHOTOS
    from pipelines.engine.identity import manifest_path
    from pipelines.engine.outputs import feature_dir, read_features, read_outputs
    from pipelines.zoo import resolve_all

    imagenet_folder(tmp_path / "val", WNIDS, per_class=4)
    imagenet_folder(tmp_path / "train", WNIDS, per_class=30, seed=2)
    imagenet_folder(tmp_path / "ood", sorted({photo.wnid for photo in OOD_PHOTOS})[:5], seed=1)
    workspace = tmp_path / "uebench-workspace"

    # over the storage budget: one line before anything runs (test_vit: (12 + 30 images) × 64 × 2 bytes)
    refused = _uebench("run", str(_write_config(tmp_path, True, storage_gib=1e-6)))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "42 images need" in refused.stderr
    assert not (workspace / "outputs").exists()

    plain = _uebench("run", str(_write_config(tmp_path, False)))
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert not (workspace / "features").exists()  # the default keeps nothing

    kept = _uebench("run", str(_write_config(tmp_path, True)))
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert "recomputing" in kept.stdout and "kept features missing" in kept.stdout  # outputs alone do not do
    (ms,) = resolve_all([MODEL])
    stored: dict[str, np.ndarray] = {}
    for dataset, kind in (("val", "id"), ("ood", "ood")):
        ids, features = read_features(workspace, MODEL_ID, dataset)
        assert ids == read_outputs(workspace, MODEL_ID, dataset).sample_ids
        images = load_folder(dataset, tmp_path / dataset, kind)
        expected = _oracle(ms, images)[[images.sample_ids.index(s) for s in ids]]
        assert features.shape == expected.shape == (len(images), 64)
        # equal to float16 rounding: ≤ 2⁻¹¹ relative (2⁻²⁵ absolute among subnormals), with 1e-5 relative to spare
        # for float32 sums in other batch compositions than the oracle's
        np.testing.assert_allclose(features, expected, rtol=2**-11 + 1e-5, atol=2**-24)
        stored[dataset] = features
    files = sorted(feature_dir(workspace, MODEL_ID, "val").glob("part-*.parquet"))
    files += sorted(feature_dir(workspace, MODEL_ID, "ood").glob("part-*.parquet"))
    assert pq.read_schema(files[0]).field("features").type.value_type == pa.float16()

    # one file damaged, another's manifest naming another output: exactly those shards recomputed, saying why
    damaged, foreign = files[0], files[-1]
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    manifest = json.loads(manifest_path(foreign).read_text())
    manifest["output_sha256"] = "0" * 64
    manifest_path(foreign).write_text(json.dumps(manifest))
    again = _uebench("run", str(_write_config(tmp_path, True)))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "kept features damaged: checksum does not match its manifest" in again.stdout
    assert "kept features were written with another output file" in again.stdout
    assert f"{len(files) - 2} verified and reused, 2 to compute" in again.stdout
    for dataset in ("val", "ood"):
        ids, features = read_features(workspace, MODEL_ID, dataset)
        np.testing.assert_array_equal(features, stored[dataset])
