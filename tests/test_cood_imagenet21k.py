"""ImageNet-21k reader, per-class sampling, estimation/test split and manifest (cood.md §1)."""

from __future__ import annotations

import hashlib
import json
import random
import zlib
from pathlib import Path

import numpy as np
import pytest

from cood.imagenet21k import (
    build_split,
    list_class_images,
    read_manifest,
    sample_class,
    sidecar_path,
    write_manifest,
)

SMALL = {"per_class": 12, "n_estimation": 9, "min_images": 12}


def make_tree(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """Class folders of empty image files with mixed-case extensions, plus distractors."""
    rng = random.Random(seed)
    extensions = [".JPEG", ".jpg", ".png", ".Jpeg"]
    for wnid, count in counts.items():
        folder = root / wnid
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"{wnid}_{rng.randrange(10**6):06d}_{i}{rng.choice(extensions)}").write_bytes(b"")
        (folder / "notes.txt").write_text("not an image")
    (root / "misc").mkdir()
    (root / "misc" / "a.JPEG").write_bytes(b"")
    (root / "README").write_text("distractor")
    return root


COUNTS = {"n00000001": 15, "n00000002": 12, "n00000003": 30, "n00000004": 11, "n00000005": 20}


def per_class_samples(manifest) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    samples: dict[str, tuple[list[str], list[str]]] = {}
    for path, index, est in zip(manifest.paths, manifest.class_index, manifest.is_estimation, strict=True):
        samples.setdefault(manifest.wnids[index], ([], []))[0 if est else 1].append(path)
    return {w: (tuple(e), tuple(t)) for w, (e, t) in samples.items()}


def test_reader_lists_only_images_in_wnid_folders(tmp_path: Path) -> None:
    root = make_tree(tmp_path, COUNTS)
    images = list_class_images(root)
    assert list(images) == sorted(COUNTS)
    assert {w: len(v) for w, v in images.items()} == COUNTS
    assert all(names == sorted(names) and not any(n.endswith(".txt") for n in names) for names in images.values())
    assert list(list_class_images(root, pool_wnids=["n00000003", "n00000001", "n09999999"])) == [
        "n00000001",
        "n00000003",
    ]


def test_split_counts_and_eligibility(tmp_path: Path) -> None:
    root = make_tree(tmp_path, COUNTS)
    manifest = build_split(root, seed=7, **SMALL)
    assert manifest.wnids == ("n00000001", "n00000002", "n00000003", "n00000005")  # n00000004 has 11 < 12
    samples = per_class_samples(manifest)
    for wnid, (estimation, test) in samples.items():
        assert len(estimation) == 9 and len(test) == 3
        assert not set(estimation) & set(test)
        assert all(p.startswith(f"{wnid}/") and (root / p).is_file() for p in estimation + test)
    assert np.bincount(manifest.class_index).tolist() == [12] * 4
    assert manifest.roles.tolist().count("test") == 12


def test_documented_procedure_is_what_is_sampled(tmp_path: Path) -> None:
    root = make_tree(tmp_path, COUNTS)
    manifest = build_split(root, seed=11, **SMALL)
    wnid = "n00000003"
    names = sorted(p.name for p in (root / wnid).iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    permutation = np.random.default_rng(np.random.SeedSequence([11, zlib.crc32(wnid.encode())])).permutation(30)
    expected_est = tuple(f"{wnid}/{n}" for n in sorted(names[i] for i in permutation[:9]))
    expected_test = tuple(f"{wnid}/{n}" for n in sorted(names[i] for i in permutation[9:12]))
    assert per_class_samples(manifest)[wnid] == (expected_est, expected_test)


def test_same_seed_same_manifest_and_seed_matters(tmp_path: Path) -> None:
    root = make_tree(tmp_path, COUNTS)
    first, second = build_split(root, seed=3, **SMALL), build_split(root, seed=3, **SMALL)
    assert first.csv_bytes() == second.csv_bytes() and first.sha256 == second.sha256
    assert build_split(root, seed=4, **SMALL).sha256 != first.sha256


def test_file_order_is_irrelevant() -> None:
    names = [f"img_{i:03d}.JPEG" for i in range(40)]
    shuffled = names[:]
    random.Random(5).shuffle(shuffled)
    assert sample_class("n01234567", names, 9, 12, 9) == sample_class("n01234567", shuffled, 9, 12, 9)


def test_adding_or_removing_classes_changes_no_other_class(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "a", COUNTS)
    before = per_class_samples(build_split(root, seed=1, **SMALL))
    extra = root / "n00000000"
    extra.mkdir()
    for i in range(25):
        (extra / f"x{i}.jpg").write_bytes(b"")
    after = per_class_samples(build_split(root, seed=1, **SMALL))
    assert set(after) == set(before) | {"n00000000"}
    assert all(after[w] == before[w] for w in before)
    subset = per_class_samples(build_split(root, seed=1, pool_wnids=["n00000003", "n00000005"], **SMALL))
    assert subset == {w: before[w] for w in ("n00000003", "n00000005")}


def test_manifest_round_trip_and_hashes(tmp_path: Path) -> None:
    manifest = build_split(make_tree(tmp_path / "data", COUNTS), seed=2, pool_version="wordnet_only-v1", **SMALL)
    target = tmp_path / "ws" / "manifest.csv"
    digest = write_manifest(manifest, target)
    assert digest == hashlib.sha256(target.read_bytes()).hexdigest() == manifest.sha256
    header = json.loads(sidecar_path(target).read_text())
    assert header["seed"] == 2 and header["n_test"] == 3 and header["pool_version"] == "wordnet_only-v1"
    assert (
        header["class_list_sha256"] == hashlib.sha256(b"".join(f"{w}\n".encode() for w in manifest.wnids)).hexdigest()
    )
    assert target.read_text().splitlines()[0] == "wnid,class_index,path,role"
    loaded = read_manifest(target.parent)
    assert loaded.wnids == manifest.wnids and loaded.paths == manifest.paths
    np.testing.assert_array_equal(loaded.class_index, manifest.class_index)
    np.testing.assert_array_equal(loaded.is_estimation, manifest.is_estimation)
    assert (loaded.seed, loaded.per_class, loaded.n_estimation, loaded.min_images, loaded.pool_version) == (
        2,
        12,
        9,
        12,
        "wordnet_only-v1",
    )
    assert not [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_tampered_or_incomplete_manifest_is_refused(tmp_path: Path) -> None:
    manifest = build_split(make_tree(tmp_path / "data", COUNTS), seed=2, **SMALL)
    target = tmp_path / "manifest.csv"
    write_manifest(manifest, target)
    target.write_text(target.read_text().replace(",test\n", ",estimation\n", 1))
    with pytest.raises(ValueError, match="SHA-256"):
        read_manifest(target)
    sidecar_path(target).unlink()
    with pytest.raises(FileNotFoundError, match="sidecar"):
        read_manifest(target)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_manifest(tmp_path / "missing.csv")


def test_root_without_wnid_folders(tmp_path: Path) -> None:
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no wnid folders under .* \(found 1 entries\); need one folder per class"):
        build_split(tmp_path, seed=0)
    with pytest.raises(ValueError, match="is not a directory"):
        build_split(tmp_path / "nowhere", seed=0)


def test_too_few_eligible_classes(tmp_path: Path) -> None:
    root = make_tree(tmp_path, COUNTS)
    with pytest.raises(ValueError, match=r"only 4 of 5 wnid folders .* have >= 12 images; need at least 10 classes"):
        build_split(root, seed=0, min_classes=10, **SMALL)
    with pytest.raises(ValueError, match=r"only 0 of 5 wnid folders .* >= 200 images"):
        build_split(root, seed=0, min_classes=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": 0, "per_class": 12, "n_estimation": 12, "min_images": 12}, "n_estimation"),
        (
            {"seed": 0, "per_class": 12, "n_estimation": 9, "min_images": 10},
            "min_images must be >= per_class",
        ),
    ],
)
def test_bad_split_parameters(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_split(make_tree(tmp_path, COUNTS), **kwargs)


def rewrite(target: Path, text: str) -> None:
    """Replace a manifest's CSV and re-sign its sidecar, so only the content checks can object."""
    target.write_text(text)
    side = sidecar_path(target)
    header = json.loads(side.read_text())
    header["csv_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    side.write_text(json.dumps(header))


def test_inconsistent_manifest_content_is_refused(tmp_path: Path) -> None:
    manifest = build_split(make_tree(tmp_path / "data", COUNTS), seed=2, **SMALL)
    target = tmp_path / "manifest.csv"
    write_manifest(manifest, target)
    text = target.read_text()
    rewrite(target, text.replace("n00000002,1,", "n00000001,1,", 1))
    with pytest.raises(ValueError, match="exactly one wnid"):
        read_manifest(target)
    rewrite(target, text.replace(",3,", ",7,"))
    with pytest.raises(ValueError, match=r"class indices must be 0\.\.3"):
        read_manifest(target)
    rewrite(target, text.replace(",test\n", ",holdout\n", 1))
    with pytest.raises(ValueError, match=r"roles \['holdout'\]"):
        read_manifest(target)
