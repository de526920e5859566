"""Output identity: a rerun recomputes exactly what changed (images replaced, added, removed, touched; a class
gone; outputs with rows removed, truncated or without manifest; other options) and its outputs equal a fresh
run's over the same inputs (oracle: a run into an empty workspace, or the untouched first run).

One baseline run is copied into each test's workspace, and every test makes all of its changes at once on
classes that own a shard each, so that "only that shard was recomputed" is a sharp statement.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.data.datasets import imagenet1k_wnids, load_folder
from pipelines.engine import identity
from pipelines.engine.inference import InferenceOptions, init_ray
from pipelines.engine.outputs import read_outputs, shard_path
from pipelines.engine.stream import EngineSettings, run_inference
from pipelines.zoo import resolve_all

MODELS = ("timm:test_vit@random", "timm:test_resnet@random")  # two preprocessing signatures
SETTINGS = EngineSettings(num_shards=8)


def _classes_with_own_shards(count: int) -> list[str]:
    """The first ``count`` ImageNet-1k classes that fall into distinct shards."""
    chosen: dict[int, str] = {}
    for wnid in imagenet1k_wnids():
        chosen.setdefault(int(identity.shard_assignment([f"{wnid}/x.jpg"], SETTINGS.num_shards)[0]), wnid)
        if len(chosen) == count:
            return list(chosen.values())
    raise AssertionError("not enough shards")


WNIDS = _classes_with_own_shards(6)


def _shard(wnid: str) -> int:
    return int(identity.shard_assignment([f"{wnid}/x.jpg"], SETTINGS.num_shards)[0])


def _photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(60, 120, size=2)
    Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(path, quality=90)


def _run(root: Path, workspace: Path, models=None, options: InferenceOptions | None = None):
    models = models or resolve_all(list(MODELS))
    return run_inference(models, [load_folder("val", root, "id")], workspace, settings=SETTINGS, options=options)


def _computed(report) -> set[tuple[str, int]]:
    return {(r.model_id, r.shard) for r in report.results if r.status == "ok"}


def _assert_same_outputs(workspace: Path, reference: Path) -> None:
    for ms in resolve_all(list(MODELS)):
        a, b = read_outputs(workspace, ms.model_id, "val"), read_outputs(reference, ms.model_id, "val")
        assert a.sample_ids == b.sample_ids
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """(image root, workspace) of one run of both models over 6 classes × 3 images."""
    import ray

    ray.shutdown()
    init_ray(num_cpus=2)
    base = tmp_path_factory.mktemp("baseline")
    for c, wnid in enumerate(WNIDS):
        (base / "val" / wnid).mkdir(parents=True)
        for k in range(3):
            _photo(base / "val" / wnid / f"img_{k}.jpg", 100 * c + k)
    first = _run(base / "val", base / "ws")
    assert {r.status for r in first.results} == {"ok"}
    yield base / "val", base / "ws"
    ray.shutdown()


@pytest.fixture
def copy(baseline, tmp_path):
    root, workspace = baseline
    shutil.copytree(root, tmp_path / "val")  # copytree keeps mtimes: an untouched copy is the same input
    shutil.copytree(workspace, tmp_path / "ws")
    return tmp_path / "val", tmp_path / "ws"


def test_shards_follow_classes_and_do_not_move_when_files_are_added():
    ids = [f"{w}/img_{k}.jpg" for w in WNIDS for k in range(3)]
    before = identity.shard_assignment(ids, 8)
    after = identity.shard_assignment([*ids, f"{WNIDS[0]}/new.jpg", "n09999999/a.jpg"], 8)
    np.testing.assert_array_equal(before, after[: len(ids)])
    for w in WNIDS:  # a class is one shard
        assert len({int(s) for sid, s in zip(ids, before, strict=True) if sid.startswith(w)}) == 1


def test_rerun_reuses_everything_when_nothing_changed(copy):
    again = _run(*copy)
    assert {r.status for r in again.results} == {"reused"} and again.decoded == 0 and not again.recomputed


def test_changed_images_recompute_only_their_shards_and_equal_a_fresh_run(copy, tmp_path):
    root, workspace = copy
    _photo(root / WNIDS[1] / "img_1.jpg", 999)  # replaced
    _photo(root / WNIDS[2] / "img_9.jpg", 998)  # added
    (root / WNIDS[3] / "img_0.jpg").unlink()  # removed
    target = root / WNIDS[4] / "img_0.jpg"  # `touch`: same bytes, new mtime
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    shutil.rmtree(root / WNIDS[5])  # a class gone: its shard holds no images now
    again = _run(root, workspace)
    models = [ms.model_id for ms in resolve_all(list(MODELS))]
    assert _computed(again) == {(m, _shard(w)) for m in models for w in WNIDS[1:5]}
    assert {r.status for r in again.results if r.shard == _shard(WNIDS[0])} == {"reused"}
    reasons = sorted(why for *_, why in again.recomputed)
    gone = f"part-{_shard(WNIDS[5]):05d}.parquet: shard holds no images now"
    assert reasons == sorted(["inputs changed: images"] * 8 + [gone] * 2)
    stale = list((workspace / "quarantine").rglob(f"part-{_shard(WNIDS[5]):05d}.parquet"))
    assert len(stale) == 2  # moved aside with its reason, not deleted and not read
    _run(root, tmp_path / "fresh")
    _assert_same_outputs(workspace, tmp_path / "fresh")


def test_damaged_outputs_are_quarantined_and_recomputed(copy, baseline):
    root, workspace = copy
    vit, resnet = (ms.model_id for ms in resolve_all(list(MODELS)))
    victims = {
        (vit, _shard(WNIDS[0])): "rows removed",  # a valid Parquet file with fewer rows
        (vit, _shard(WNIDS[1])): "truncated",
        (resnet, _shard(WNIDS[2])): "manifest lost",
    }
    for (model_id, shard), damage in victims.items():
        path = shard_path(workspace, model_id, "val", shard)
        if damage == "rows removed":
            table = pq.read_table(path)
            pq.write_table(table.slice(0, table.num_rows - 1), path)
        elif damage == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        else:
            identity.manifest_path(path).unlink()
    again = _run(root, workspace)
    assert _computed(again) == set(victims)
    reasons = {(m, s): why for m, _, s, why in again.recomputed}
    assert reasons.keys() == victims.keys()
    for key, damage in victims.items():
        assert reasons[key].startswith("no manifest" if damage == "manifest lost" else "damaged: checksum")
    assert len(list((workspace / "quarantine").rglob("part-*.parquet"))) == 3  # kept for inspection
    _assert_same_outputs(workspace, baseline[1])


def test_changed_options_are_part_of_the_identity(copy):
    root, workspace = copy
    models = resolve_all([MODELS[0]])
    again = _run(root, workspace, models, InferenceOptions(confidences=("msp",)))
    assert {r.status for r in again.results} == {"ok"}
    assert {why for *_, why in again.recomputed} == {"inputs changed: options (confidences)"}


def test_an_output_made_with_other_weights_is_quarantined_when_the_model_loads_now(copy):
    """Hub weights replaced under the same id: the loaded state-dict digest (recorded per output) disagrees."""
    import json

    root, workspace = copy
    (ms,) = resolve_all([MODELS[0]])
    computed, other = _shard(WNIDS[0]), _shard(WNIDS[1])
    shard_path(workspace, ms.model_id, "val", computed).unlink()  # so this run loads the model
    manifest = identity.manifest_path(shard_path(workspace, ms.model_id, "val", other))
    record = json.loads(manifest.read_text())
    record["state_dict_sha256"] = "f" * 64
    manifest.write_text(json.dumps(record))
    again = _run(root, workspace, [ms])
    by_shard = {r.shard: r for r in again.results}
    assert by_shard[computed].status == "ok"
    assert by_shard[other].status == "failed" and by_shard[other].error.startswith("weights changed: state-dict ffff")
    assert {r.status for s, r in by_shard.items() if s not in (computed, other)} == {"reused"}
    assert not shard_path(workspace, ms.model_id, "val", other).exists()  # quarantined: the next run recomputes
    assert _computed(_run(root, workspace, [ms])) == {(ms.model_id, other)}
