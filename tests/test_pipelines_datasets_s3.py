"""``s3://`` dataset roots against a real S3-compatible server the test starts itself (moto in server mode, on
127.0.0.1 at a free port): the folder layout, per-synset tars, WebDataset and Parquet shards read from the bucket
give the local folder's sample ids, labels, C-OOD manifest and decoded crops (oracle: the local folder through
the folder loader). Credentials come from the standard environment chain only and never appear in messages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from folders import decoded_crops, imagenet_folder, parquet_shards, tar_folder, webdataset_shards

from cood.pool import ood_class_pool
from pipelines.data import storage
from pipelines.data.datasets import imagenet1k_wnids, load_dataset, load_folder, load_ood_split, ood_manifest_path
from pipelines.errors import UserError

moto_server = pytest.importorskip("moto.server", reason="moto[server] is a dev dependency (pip install -e '.[dev]')")
SECRET = "uebench-test-secret-key-never-shown"
ID_WNIDS = list(imagenet1k_wnids()[20:22])
OOD_WNIDS = sorted(ood_class_pool().wnids)[200:202]
BUCKET = "datasets"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(local folder root, {layout: s3 URI}, local OOD folder) with the images uploaded to a fresh moto server."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    saved = dict(os.environ)
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "uebench-test", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_EC2_METADATA_DISABLED": "true",
    })
    os.environ.pop("AWS_PROFILE", None)
    storage._filesystem.cache_clear()  # clients are made per process from the environment
    try:
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        base = tmp_path_factory.mktemp("s3")
        src = imagenet_folder(base / "val", ID_WNIDS, per_class=3)
        ood = imagenet_folder(base / "21k", OOD_WNIDS, per_class=5, seed=9)
        layouts = {
            "folder": src,
            "tar": tar_folder(src, base / "tar"),
            "wds": webdataset_shards(src, base / "wds", classes=imagenet1k_wnids()),
            "parquet": parquet_shards(src, base / "pq", classes=imagenet1k_wnids()),
            "ood-tar": tar_folder(ood, base / "ood-tar"),
        }
        uris = {}
        for layout, folder in layouts.items():
            for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
                client.upload_file(str(path), BUCKET, f"{layout}/{path.relative_to(folder).as_posix()}")
            uris[layout] = f"s3://{BUCKET}/{layout}"
        yield src, uris, ood
    finally:
        os.environ.clear()
        os.environ.update(saved)
        storage._filesystem.cache_clear()
        server.stop()


@pytest.mark.parametrize("layout", ["folder", "tar", "wds", "parquet"])
def test_s3_roots_give_the_local_folders_samples_and_crops(s3, layout, tmp_path):
    src, uris, _ = s3
    reference = load_folder("val", src, "id")
    dataset = load_dataset("val", uris[layout], "id", workspace=tmp_path / "ws")
    assert dataset.root == uris[layout] and dataset.format == layout
    assert dataset.sample_ids == reference.sample_ids and dataset.labels == reference.labels
    crops, errors = decoded_crops(dataset)
    assert not any(errors)
    np.testing.assert_array_equal(crops, decoded_crops(reference)[0])
    if layout != "folder":  # the index is cached in the (local) workspace and reused
        again = load_dataset("val", uris[layout], "id", workspace=tmp_path / "ws")
        assert again.sample_ids == dataset.sample_ids
        assert again.locators.stamps() == dataset.locators.stamps()


def test_the_c_ood_split_from_s3_equals_the_local_one(s3, tmp_path):
    _, uris, ood = s3
    params = {"seed": 1, "per_class": 4, "n_estimation": 3, "min_images": 4}
    local = load_ood_split("ood", ood, tmp_path / "local", **params)
    remote = load_ood_split("ood", uris["ood-tar"], tmp_path / "remote", **params)
    assert remote.sample_ids == local.sample_ids and remote.labels == local.labels
    assert ood_manifest_path(tmp_path / "remote", "ood").read_bytes() == ood_manifest_path(
        tmp_path / "local", "ood"
    ).read_bytes()


def test_a_missing_prefix_is_one_line_without_credentials(s3):
    with pytest.raises(UserError) as info:
        load_dataset("val", f"s3://{BUCKET}/nothing-here", "id")
    message = str(info.value)
    assert "does not exist" in message and "\n" not in message
    assert SECRET not in message and "uebench-test" not in message
