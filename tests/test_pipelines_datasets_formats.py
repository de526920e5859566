"""Dataset readers (docs/datasets.md): the same generated images written as a folder, per-synset tars, a tar of
tars, WebDataset shards (each label kind) and Parquet shards give the same sample ids, labels, C-OOD manifest
and decoded crops. Oracle: the extracted folder read by the folder loader and decoded from its files (code that
predates the readers). Also: the index cache (a changed archive is re-indexed, and only it), output identity
of archive members, and bad archives as one-line errors or bad_files rows."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from folders import (
    decoded_crops,
    imagenet_folder,
    parquet_shards,
    tar_folder,
    tar_of_tars,
    webdataset_shards,
)

from cood.imagenet21k import read_manifest
from cood.pool import ood_class_pool
from pipelines.data import archives
from pipelines.data.datasets import imagenet1k_wnids, load_dataset, load_folder, load_ood_split, ood_manifest_path
from pipelines.engine import identity
from pipelines.engine.run_config import parse_config
from pipelines.errors import UserError

ID_WNIDS = list(imagenet1k_wnids()[10:13])


def _pool_wnids(count: int) -> list[str]:
    wnids = sorted(ood_class_pool().wnids)
    return wnids[100 : 100 + count]


OOD_WNIDS = _pool_wnids(3)
NOT_POOL = "n09999999"  # a wnid outside the pool: every loader drops it from the C-OOD split


def _writers(src: Path, dst: Path, classes: tuple[str, ...]) -> dict[str, Path]:
    """Root of every container format (and label kind) holding ``src``'s images."""
    return {
        "tar": tar_folder(src, dst / "tar"),
        "tars": tar_of_tars(src, dst / "whole.tar"),
        "wds-cls": webdataset_shards(src, dst / "wds-cls", label="cls", classes=classes),
        "wds-json": webdataset_shards(src, dst / "wds-json", label="json", seed=1),
        "wds-txt": webdataset_shards(src, dst / "wds-txt", label="txt", per_shard=3, seed=2),
        "parquet-cls": parquet_shards(src, dst / "pq-cls", label="cls", classes=classes),
        "parquet-wnid": parquet_shards(src, dst / "pq-wnid", label="wnid", rows_per_group=2, seed=3),
    }


@pytest.fixture(scope="module")
def id_sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("id")
    src = imagenet_folder(base / "val", ID_WNIDS, per_class=4)
    return src, _writers(src, base, imagenet1k_wnids()), base / "ws"


@pytest.fixture(scope="module")
def ood_sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("ood")
    wnids = [*OOD_WNIDS, NOT_POOL]
    src = imagenet_folder(base / "21k", wnids, per_class=6, seed=5)
    (src / OOD_WNIDS[0] / "readme.txt").write_text("not an image")  # listed by no loader
    classes = tuple(sorted(wnids))
    (base / "classes.txt").write_text("".join(f"{w}\n" for w in classes))
    return src, _writers(src, base, classes), base


@pytest.mark.parametrize("fmt", ["tar", "tars", "wds-cls", "wds-json", "wds-txt", "parquet-cls", "parquet-wnid"])
def test_every_format_gives_the_folders_ids_labels_and_crops(id_sets, fmt):
    src, roots, workspace = id_sets
    reference = load_folder("val", src, "id")
    dataset = load_dataset("val", roots[fmt], "id", workspace=workspace)
    assert dataset.format == fmt.partition("-")[0]
    assert dataset.sample_ids == reference.sample_ids
    assert dataset.labels == reference.labels
    assert dataset.class_wnids == reference.class_wnids
    crops, errors = decoded_crops(dataset)
    expected, expected_errors = decoded_crops(reference)
    assert list(errors) == [""] * len(dataset) == list(expected_errors)
    np.testing.assert_array_equal(crops, expected)


@pytest.mark.parametrize("fmt", ["tar", "tars", "wds-cls", "wds-json", "wds-txt", "parquet-cls", "parquet-wnid"])
def test_the_c_ood_split_does_not_depend_on_the_container(ood_sets, fmt):
    src, roots, base = ood_sets
    params = {"seed": 3, "per_class": 4, "n_estimation": 2, "min_images": 4, "min_classes": 3}
    reference = load_ood_split("ood", src, base / "ws-folder", **params)
    classes = base / "classes.txt" if fmt.endswith("-cls") else None
    dataset = load_ood_split("ood", roots[fmt], base / f"ws-{fmt}", classes=classes, **params)
    assert reference.class_wnids == tuple(OOD_WNIDS)  # the non-pool class and the text file are left out
    assert dataset.sample_ids == reference.sample_ids and dataset.labels == reference.labels
    assert dataset.class_wnids == reference.class_wnids
    ours, theirs = ood_manifest_path(base / f"ws-{fmt}", "ood"), ood_manifest_path(base / "ws-folder", "ood")
    assert ours.read_bytes() == theirs.read_bytes()
    assert read_manifest(ours).sha256 == read_manifest(theirs).sha256
    crops, errors = decoded_crops(dataset)
    np.testing.assert_array_equal(crops, decoded_crops(reference)[0])
    assert not any(errors)


def test_format_is_detected_and_an_explicit_one_is_checked(id_sets, tmp_path):
    _, roots, _ = id_sets
    detected = {name: archives.detect_format(str(root)) for name, root in roots.items()}
    assert detected == {"tar": "tar", "tars": "tars", "wds-cls": "wds", "wds-json": "wds", "wds-txt": "wds",
                        "parquet-cls": "parquet", "parquet-wnid": "parquet"}
    assert load_dataset("val", roots["wds-cls"], "id", format="wds").format == "wds"
    with pytest.raises(UserError, match="unknown dataset format 'zip'"):
        load_dataset("val", roots["tar"], "id", format="zip")
    with pytest.raises(UserError, match="format must be one of"):
        parse_config({"models": ["timm:x"], "datasets": {"v": {"kind": "id", "root": "r", "format": "zip"}}}, tmp_path)
    config = parse_config({"models": ["timm:x"], "datasets": {
        "v": {"kind": "id", "root": "s3://bucket/val", "format": "wds"},
        "o": {"kind": "ood", "root": "data/w21", "classes": "classes.txt"},
    }}, tmp_path)
    assert config.datasets[0].root == "s3://bucket/val" and config.datasets[0].format == "wds"
    assert config.datasets[1].classes == tmp_path / "classes.txt"


def test_a_glob_selects_shards(id_sets, tmp_path):
    src, roots, _ = id_sets
    # the Hugging Face layout keeps every split in data/: a glob in the root's last component picks one
    only_first = load_dataset("val", f"{roots['parquet-cls']}/data/train-00000.parquet", "id")
    globbed = load_dataset("val", f"{roots['parquet-cls']}/data/train-0000[0].parquet", "id")
    everything = load_dataset("val", f"{roots['parquet-cls']}/data/*.parquet", "id")
    assert only_first.sample_ids == globbed.sample_ids and len(only_first) == 7
    assert everything.sample_ids == load_folder("val", src, "id").sample_ids


def test_the_index_is_cached_and_a_changed_archive_is_reindexed(id_sets, tmp_path):
    src, _, _ = id_sets
    root = tar_folder(src, tmp_path / "tar")
    cache = archives.index_path(tmp_path / "ws", "tar", str(root))
    _, first, stats = archives.build_index("tar", str(root), cache)
    assert (stats.indexed, stats.cached) == (3, 0) and cache.is_file()
    _, again, stats = archives.build_index("tar", str(root), cache)
    assert (stats.indexed, stats.cached) == (0, 3)
    assert again.names == first.names and np.array_equal(again.start, first.start)
    changed = root / f"{ID_WNIDS[1]}.tar"
    members = [(f"extra_{k}.jpg", (src / ID_WNIDS[1] / f"img_{k}.jpg").read_bytes()) for k in range(2)]
    with tarfile.open(changed, "a") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _, third, stats = archives.build_index("tar", str(root), cache)
    assert (stats.indexed, stats.cached) == (1, 2)
    assert len(third.names) == len(first.names) + 2
    dataset = load_dataset("val", root, "id", workspace=tmp_path / "ws")
    crops, errors = decoded_crops(dataset)
    extra = [dataset.sample_ids.index(f"{ID_WNIDS[1]}/extra_{k}.jpg") for k in range(2)]
    same = [dataset.sample_ids.index(f"{ID_WNIDS[1]}/img_{k}.jpg") for k in range(2)]
    np.testing.assert_array_equal(crops[extra], crops[same])  # the appended members hold the same bytes
    assert not any(errors)


def test_a_damaged_cache_is_rebuilt(id_sets, tmp_path):
    src, _, _ = id_sets
    root = tar_folder(src, tmp_path / "tar")
    cache = archives.index_path(tmp_path / "ws", "tar", str(root))
    _, first, _ = archives.build_index("tar", str(root), cache)
    cache.write_bytes(b"not parquet")
    _, again, stats = archives.build_index("tar", str(root), cache)
    assert stats.indexed == 3 and again.names == first.names


def test_the_fingerprint_follows_the_archive(id_sets, tmp_path):
    src, _, _ = id_sets
    root = tar_folder(src, tmp_path / "tar")
    before = identity.plan_shards(load_dataset("val", root, "id"), 64)
    again = identity.plan_shards(load_dataset("val", root, "id"), 64)
    assert before.fingerprints == again.fingerprints
    touched = root / f"{ID_WNIDS[0]}.tar"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = identity.plan_shards(load_dataset("val", root, "id"), 64)
    shard = int(identity.shard_assignment([f"{ID_WNIDS[0]}/x"], 64)[0])
    changed = {s for s in before.fingerprints if before.fingerprints[s] != after.fingerprints[s]}
    assert changed == {shard}


def test_local_folders_keep_their_fingerprint(id_sets):
    """The folder fingerprint is unchanged by the readers: lines ``sample_id, label, size, mtime_ns``."""
    import hashlib

    src, _, _ = id_sets
    dataset = load_dataset("val", src, "id")
    assert dataset.locators is None
    plan = identity.plan_shards(dataset, 1)
    digest = hashlib.sha256()
    for sample_id, label in zip(dataset.sample_ids, dataset.labels, strict=True):
        st = (src / sample_id).stat()
        digest.update(f"{sample_id}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    assert plan.fingerprints == {0: digest.hexdigest()}


# -- bad archives ------------------------------------------------------------------------------------------------


def test_a_truncated_member_is_a_bad_file_not_a_crash(id_sets, tmp_path):
    src, _, _ = id_sets
    root = tar_folder(src, tmp_path / "tar")
    victim = root / f"{ID_WNIDS[2]}.tar"
    members = list(archives.tar_members(lambda o, n: victim.read_bytes()[o : o + n], 0, victim.stat().st_size, "t"))
    last_name, last_offset, last_size = members[-1]
    with open(victim, "r+b") as handle:
        handle.truncate(last_offset + last_size // 2)
    dataset = load_dataset("val", root, "id")
    _, errors = decoded_crops(dataset)
    bad = {dataset.sample_ids[i]: str(e) for i, e in enumerate(errors) if e}
    assert list(bad) == [f"{ID_WNIDS[2]}/{last_name}"]
    assert bad[f"{ID_WNIDS[2]}/{last_name}"] == (
        f"ImageError: cannot read: truncated archive member ({last_size // 2} of {last_size} bytes)"
    )


def test_a_corrupt_header_is_one_line(id_sets, tmp_path):
    src, _, _ = id_sets
    root = tar_folder(src, tmp_path / "tar")
    victim = root / f"{ID_WNIDS[0]}.tar"
    data = bytearray(victim.read_bytes())
    data[100:108] = b"garbage!"  # the mode field: the checksum no longer matches
    victim.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"n\d{8}\.tar: invalid tar header at byte 0") as info:
        load_dataset("val", root, "id")
    assert "\n" not in str(info.value)


def test_an_unreadable_parquet_shard_is_one_line(id_sets, tmp_path):
    src, _, _ = id_sets
    root = parquet_shards(src, tmp_path / "pq", classes=imagenet1k_wnids())
    (root / "data" / "train-00001.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UserError, match=r"cannot read Parquet shard .*train-00001\.parquet") as info:
        load_dataset("val", root, "id")
    assert "\n" not in str(info.value)
    pq.write_table(pa.table({"img": [b"x"], "label": [1]}), root / "data" / "train-00001.parquet")
    with pytest.raises(UserError, match="has no 'image' column"):
        load_dataset("val", root, "id")


def test_a_damaged_row_group_is_a_bad_file(id_sets, tmp_path):
    src, _, _ = id_sets
    root = parquet_shards(src, tmp_path / "pq", classes=imagenet1k_wnids(), rows_per_group=100)
    dataset = load_dataset("val", root, "id")
    victim = root / "data" / "train-00000.parquet"
    data = bytearray(victim.read_bytes())
    data[4:2004] = bytes(2000)  # the first row group's pages; the footer (and so the index) stays valid
    victim.write_bytes(bytes(data))
    _, errors = decoded_crops(dataset)
    in_victim = [i for i in range(len(dataset)) if dataset.locators.location(int(dataset.locators.file[i])) ==
                 str(victim)]
    assert len(in_victim) == 7
    assert all(str(errors[i]).startswith("ImageError: cannot") for i in in_victim)
    assert not any(errors[i] for i in range(len(dataset)) if i not in in_victim)


@pytest.mark.parametrize(("label", "message"), [
    (b"5000", "has label 5000, outside 0..999 of the class list"),
    (b"-3", "has an invalid label"),
])
def test_a_label_out_of_range_is_one_line(id_sets, tmp_path, label, message):
    src, _, _ = id_sets
    root = webdataset_shards(src, tmp_path / "wds", classes=imagenet1k_wnids())
    shard = root / "shard-0000.tar"
    rows = list(archives.tar_members(lambda o, n: shard.read_bytes()[o : o + n], 0, shard.stat().st_size, "s"))
    name = next(r[0] for r in rows if r[0].endswith(".cls"))
    members = []
    with tarfile.open(shard) as tar:
        for info in tar.getmembers():
            data = tar.extractfile(info).read()
            members.append((info.name, label if info.name == name else data))
    _rewrite(shard, members)
    with pytest.raises(UserError, match=message):
        load_dataset("val", root, "id")


def _rewrite(path: Path, members: list[tuple[str, bytes]]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())


def test_labels_that_name_no_class_are_one_line(ood_sets, tmp_path):
    _, roots, _ = ood_sets
    with pytest.raises(UserError, match="has only a class index: give the OOD set a class list"):
        load_ood_split("ood", roots["wds-cls"], tmp_path / "ws", per_class=4, n_estimation=2, min_images=4)
    shutil.copytree(roots["wds-json"], tmp_path / "wds-json")
    shard = sorted((tmp_path / "wds-json").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(i.name, tar.extractfile(i).read()) for i in tar.getmembers()]
    members = [(n, json.dumps({"wnid": "dog"}).encode() if n.endswith(".json") else d) for n, d in members]
    _rewrite(shard, members)
    with pytest.raises(UserError, match="has class 'dog', which is not a wnid"):
        load_ood_split("ood", tmp_path / "wds-json", tmp_path / "ws", per_class=4, n_estimation=2, min_images=4)
    (tmp_path / "short.txt").write_text(f"{OOD_WNIDS[0]}\n")
    with pytest.raises(UserError, match=r"outside 0\.\.0 of the class list"):
        load_ood_split("ood", roots["parquet-cls"], tmp_path / "ws", classes=tmp_path / "short.txt", per_class=4,
                       n_estimation=2, min_images=4)


def test_an_ood_set_with_too_few_pool_classes_is_one_line(ood_sets, tmp_path):
    _, roots, _ = ood_sets
    with pytest.raises(UserError, match=r"only 3 of 3 pool classes .* need at least 4 classes"):
        load_ood_split("ood", roots["tar"], tmp_path / "ws", per_class=4, n_estimation=2, min_images=4,
                       min_classes=4)


def test_an_id_set_with_a_non_imagenet_class_is_one_line(ood_sets, tmp_path):
    _, roots, _ = ood_sets
    with pytest.raises(UserError, match=r"classes of .* are not ImageNet-1k wnids"):
        load_dataset("val", roots["tars"], "id")


def test_compressed_and_missing_roots_are_one_line(tmp_path):
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "n01440764.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(UserError, match="compressed tars"):
        load_dataset("val", tmp_path / "gz", "id")
    with pytest.raises(UserError, match="does not exist"):
        load_dataset("val", tmp_path / "nothing", "id")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds neither"):
        load_dataset("val", tmp_path / "empty", "id")


def test_tar_headers_of_every_kind_are_read(tmp_path):
    """ustar, GNU long names and pax headers (long and non-ASCII names): offsets and sizes equal tarfile's own."""
    long_name = "n01440764/" + "x" * 150 + ".jpg"
    names = ["a.jpg", long_name, "ünïcode.png", "dir/b.JPEG"]
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        if fmt == tarfile.USTAR_FORMAT:
            chosen = [n for n in names if len(n) < 100 and n.isascii()]
        else:
            chosen = names
        path = tmp_path / f"t{fmt}.tar"
        with tarfile.open(path, "w", format=fmt) as tar:
            for k, name in enumerate(chosen):
                data = bytes([k]) * (700 * k + 1)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            folder = tarfile.TarInfo("folder")
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)  # not a file: skipped
        raw = path.read_bytes()
        got = list(archives.tar_members(lambda o, n, raw=raw: raw[o : o + n], 0, len(raw), str(path)))
        with tarfile.open(path) as tar:
            expected = [(m.name, m.offset_data, m.size) for m in tar.getmembers() if m.isreg()]
        assert got == expected


@pytest.mark.slow
def test_a_run_over_archives_equals_a_run_over_the_folder(id_sets, ood_sets, tmp_path):
    """Through the engine (listing blocks with locators -> Ray decode tasks -> model actors): outputs over per-synset
    tars, and an OOD split from WebDataset shards, equal the folder's; a truncated member is a bad_files row and
    the run goes on."""
    import ray

    from pipelines.engine.inference import init_ray
    from pipelines.engine.outputs import read_outputs
    from pipelines.engine.stream import EngineSettings, run_inference
    from pipelines.zoo import resolve_all

    src, _, _ = id_sets
    ood_src, ood_roots, _ = ood_sets
    root = tar_folder(src, tmp_path / "tar")
    victim = root / f"{ID_WNIDS[2]}.tar"
    *_, (last_name, last_offset, last_size) = archives.tar_members(
        lambda o, n: victim.read_bytes()[o : o + n], 0, victim.stat().st_size, "t"
    )
    with open(victim, "r+b") as handle:
        handle.truncate(last_offset + last_size // 2)
    (src_copy := tmp_path / "folder").mkdir()
    shutil.copytree(src, src_copy, dirs_exist_ok=True)
    (src_copy / ID_WNIDS[2] / last_name).write_bytes((src / ID_WNIDS[2] / last_name).read_bytes()[: last_size // 2])
    split = {"seed": 3, "per_class": 4, "n_estimation": 2, "min_images": 4}
    models = resolve_all(["timm:test_resnet@random"])
    settings = EngineSettings(num_shards=2)
    ray.shutdown()
    init_ray(num_cpus=2)
    try:
        ours = [load_dataset("val", root, "id", workspace=tmp_path / "a"),
                load_ood_split("ood", ood_roots["wds-json"], tmp_path / "a", **split)]
        theirs = [load_folder("val", src_copy, "id"), load_ood_split("ood", ood_src, tmp_path / "b", **split)]
        first = run_inference(models, ours, tmp_path / "a", settings=settings)
        second = run_inference(models, theirs, tmp_path / "b", settings=settings)
    finally:
        ray.shutdown()
    assert {r.status for r in first.results} == {"ok"} == {r.status for r in second.results}
    bad = sorted(b for r in first.results for b in r.bad_files)
    assert [sample for sample, _ in bad] == [f"{ID_WNIDS[2]}/{last_name}"]
    assert [sample for r in second.results for sample, _ in r.bad_files] == [f"{ID_WNIDS[2]}/{last_name}"]
    for name in ("val", "ood"):
        a = read_outputs(tmp_path / "a", models[0].model_id, name)
        b = read_outputs(tmp_path / "b", models[0].model_id, name)
        assert a.sample_ids == b.sample_ids and len(a.sample_ids) == (11 if name == "val" else 12)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.pred, b.pred)
        np.testing.assert_allclose(a.confidences["msp"], b.confidences["msp"], atol=1e-6, rtol=0)
        if name == "val":
            np.testing.assert_allclose(a.logits, b.logits, atol=1e-5, rtol=0)
