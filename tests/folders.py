"""Image folders in the ImageNet layout, and the same images in containers, for tests (tests import this; it
is no test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def imagenet_folder(root: Path, wnids: list[str], per_class: int = 6, seed: int = 0) -> Path:
    """``root/<wnid>/img_<k>.jpg``: 96×128 random JPEGs, one colour channel halved per class (a little
    class structure); returns ``root``."""
    rng = np.random.default_rng(seed)
    for c, wnid in enumerate(wnids):
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
            pixels[..., c % 3] //= 2
            Image.fromarray(pixels).save(root / wnid / f"img_{k}.jpg", quality=90)
    return root


# -- the same images in containers (docs/datasets.md): each writer takes an imagenet_folder-style root ----------


def _class_images(root: Path) -> list[tuple[str, Path]]:
    """``(wnid, image path)`` of every image of ``root/<wnid>/``, sorted."""
    return [(folder.name, image) for folder in sorted(p for p in root.iterdir() if p.is_dir())
            for image in sorted(folder.iterdir())]


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_folder(src: Path, dst: Path) -> Path:
    """``dst/<wnid>.tar`` per class folder of ``src`` (members: the images' file names); returns ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for folder in sorted(p for p in src.iterdir() if p.is_dir()):
        members = [(image.name, image.read_bytes()) for image in sorted(folder.iterdir())]
        (dst / f"{folder.name}.tar").write_bytes(_tar_bytes(members))
    return dst


def tar_of_tars(src: Path, path: Path) -> Path:
    """One tar at ``path`` holding ``<wnid>.tar`` per class folder of ``src`` (the fall11_whole layout)."""
    inner = [
        (f"{folder.name}.tar", _tar_bytes([(i.name, i.read_bytes()) for i in sorted(folder.iterdir())]))
        for folder in sorted(p for p in src.iterdir() if p.is_dir())
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_tar_bytes(inner))
    return path


def webdataset_shards(src: Path, dst: Path, *, per_shard: int = 5, label: str = "cls",
                      classes: tuple[str, ...] = (), seed: int = 0) -> Path:
    """WebDataset shards ``dst/shard-<k>.tar`` of ``src``'s images in a seeded shuffled order: members
    ``<wnid>/<stem>.<ext>`` and a label member: ``.cls`` (index in ``classes``), ``.json`` ({"wnid": ...}) or
    ``.txt`` (the wnid)."""
    import json

    dst.mkdir(parents=True, exist_ok=True)
    images = _class_images(src)
    order = np.random.default_rng(seed).permutation(len(images))
    for k, start in enumerate(range(0, len(images), per_shard)):
        members = []
        for i in order[start : start + per_shard]:
            wnid, image = images[int(i)]
            key = f"{wnid}/{image.stem}"
            members.append((f"{key}{image.suffix}", image.read_bytes()))
            if label == "cls":
                members.append((f"{key}.cls", str(classes.index(wnid)).encode()))
            elif label == "json":
                members.append((f"{key}.json", json.dumps({"wnid": wnid, "size": image.stat().st_size}).encode()))
            else:
                members.append((f"{key}.txt", wnid.encode()))
        (dst / f"shard-{k:04d}.tar").write_bytes(_tar_bytes(members))
    return dst


def parquet_shards(src: Path, dst: Path, *, per_shard: int = 7, rows_per_group: int = 3, label: str = "cls",
                   classes: tuple[str, ...] = (), seed: int = 0) -> Path:
    """Hugging Face-style Parquet shards ``dst/data/train-<k>.parquet`` of ``src``'s images (seeded shuffle): column
    ``image`` struct{bytes, path} and ``label`` (index in ``classes``) or ``wnid`` (string)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (dst / "data").mkdir(parents=True, exist_ok=True)
    images = _class_images(src)
    order = np.random.default_rng(seed).permutation(len(images))
    for k, start in enumerate(range(0, len(images), per_shard)):
        chosen = [images[int(i)] for i in order[start : start + per_shard]]
        columns = {"image": pa.array([{"bytes": p.read_bytes(), "path": p.name} for _, p in chosen])}
        if label == "cls":
            columns["label"] = pa.array([classes.index(w) for w, _ in chosen], type=pa.int64())
        else:
            columns["wnid"] = pa.array([w for w, _ in chosen])
        pq.write_table(pa.table(columns), dst / "data" / f"train-{k:05d}.parquet", row_group_size=rows_per_group)
    return dst


def decoded_crops(dataset, pre=None) -> tuple[np.ndarray, np.ndarray]:
    """``(crops (N, S, S, 3) uint8, errors (N,) str)`` of every sample of ``dataset`` through the engine's decode
    stage (``pipelines.engine.stream.decode_block``), fed the locator columns of its listing blocks; ``pre``
    defaults to a 32-pixel centre crop."""
    from pipelines.engine.stream import _locator_columns, decode_block
    from pipelines.zoo import Preprocess

    pre = pre or Preprocess(input_size=32, crop_pct=0.875, crop_mode="center", interpolation="bilinear",
                            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    columns = _locator_columns(dataset, np.arange(len(dataset)))
    batch = {name: column.to_numpy(zero_copy_only=False) for name, column in columns.items()}
    batch["idx"] = np.arange(len(dataset))
    out = decode_block(batch, [pre], max_pixels=10**8)
    return out["crop0"], out["error"]


def timm_eval_batch(ms, dataset):
    """The oracle input of ``dataset``'s images for model spec ``ms``: timm's own eval transform (``create_transform``
    with the spec's preprocessing) of each image opened with PIL, stacked: ``(N, 3, S, S) float32`` torch tensor."""
    import torch
    from timm.data import create_transform

    pre = ms.preprocess
    transform = create_transform(
        input_size=(3, pre.input_size, pre.input_size), is_training=False, interpolation=pre.interpolation,
        mean=pre.mean, std=pre.std, crop_pct=pre.crop_pct, crop_mode=pre.crop_mode,
    )
    return torch.stack([transform(Image.open(dataset.path(i)).convert("RGB")) for i in range(len(dataset))])
