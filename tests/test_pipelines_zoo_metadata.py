"""pipelines.zoo.metadata: GMACs on the meta device, the regime of resolved specs, the papers' bare timm names."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import UserError
from pipelines.zoo import resolve
from pipelines.zoo.metadata import count_gmacs, metadata_columns
from pipelines.zoo.registry import ModelSpec, Preprocess
from results.model_metadata import load_overrides


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v3_large"])
def test_gmacs_match_torchvision_published_operation_counts(name: str) -> None:
    ms = resolve(f"torchvision:{name}.IMAGENET1K_V1")[0]
    gmacs, reason = count_gmacs(ms)
    published = ms.pretrained_cfg["_ops"]  # torchvision's weights meta: giga multiply-adds at 224 px
    assert reason is None and gmacs == pytest.approx(published, rel=0.01)


def test_gmacs_of_a_vision_transformer_count_attention() -> None:
    # ViT-B/16 at 224: 12 blocks × (4·197·768² + 2·197²·768 + 2·197·768·3072) + patch embedding 196·768·768
    # + head 768·1000 multiply-adds (hand count of the matrix products)
    tokens, width, blocks = 197, 768, 12
    per_block = 4 * tokens * width**2 + 2 * tokens**2 * width + 2 * tokens * width * 4 * width
    expected = (blocks * per_block + 196 * 768 * 768 + 768 * 1000) / 1e9
    gmacs, reason = count_gmacs(resolve("timm:vit_base_patch16_224.augreg_in21k_ft_in1k")[0])
    assert reason is None and gmacs == pytest.approx(expected, rel=1e-6)


def test_gmacs_failure_is_null_with_a_reason() -> None:
    ms = ModelSpec("timm:not_a_model@random", "timm", "not_a_model", None, False,
                   Preprocess(224, 0.875, "center", "bicubic", (0.5,) * 3, (0.5,) * 3))
    gmacs, reason = count_gmacs(ms)
    assert gmacs is None and reason.startswith("not countable on the meta device: RuntimeError: Unknown model")


def test_metadata_columns_of_resolved_specs_and_overrides(tmp_path: Path) -> None:
    ms = resolve("timm:deit_tiny_distilled_patch16_224.fb_in1k")[0]
    row = metadata_columns(ms)
    assert (row["family"], row["pretraining"], row["distilled"], row["metadata_source"]) == (
        "deit", "in1k", True, "rules")
    assert row["gmacs"] > 1.0 and row["gmacs_reason"] is None  # DeiT-Ti: 1.3 GMACs (paper: 1.3 GFLOPs as MACs)
    (tmp_path / "o.toml").write_text('["timm:deit_tiny_distilled_patch16_224.fb_in1k"]\npretraining = "in22k"\n')
    row = metadata_columns(ms, load_overrides(tmp_path / "o.toml"))  # keyed by the spec string
    assert (row["pretraining"], row["distilled"], row["metadata_source"]) == ("in22k", True, "override")
    random = metadata_columns(resolve("timm:resnet18@random")[0])
    assert (random["family"], random["pretraining"], random["distilled"]) == ("resnet", None, False)


# bare names of the C-OOD paper (timm 0.6) whose regime only timm can tell, labelled from the model cards
@pytest.mark.parametrize(
    ("published", "model_id", "pretraining", "flag"),
    [
        ("adv_inception_v3", "timm-inception_v3.tf_adv_in1k", "in1k", "adversarial"),
        ("ens_adv_inception_resnet_v2", "timm-inception_resnet_v2.tf_ens_adv_in1k", "in1k", "adversarial"),
        ("tf_efficientnet_b3_ap", "timm-tf_efficientnet_b3.ap_in1k", "in1k", "adversarial"),
        ("tf_efficientnet_b0_ns", "timm-tf_efficientnet_b0.ns_jft_in1k", "jft", "semi_supervised"),
        ("deit_base_distilled_patch16_224", "timm-deit_base_distilled_patch16_224.fb_in1k", "in1k", "distilled"),
        ("resnet50", "timm-resnet50.a1_in1k", "in1k", None),
        ("vit_large_patch32_384", "timm-vit_large_patch32_384.orig_in21k_ft_in1k", "in21k", None),
    ],
)
def test_bare_published_timm_names(published: str, model_id: str, pretraining: str, flag: str | None) -> None:
    from pipelines.zoo.timm_models import published_timm_name
    from results.reference import reference_models

    row = reference_models([published], resolve=published_timm_name).row(0, named=True)
    assert (row["model_id"], row["pretraining"]) == (model_id, pretraining)
    assert row["mapping"] in ("timm_renamed", "timm_default_tag")
    assert {f for f in ("distilled", "self_supervised", "semi_supervised", "clip", "adversarial") if row[f]} == (
        {flag} if flag else set())


def test_mapped_ids_are_the_ids_our_zoo_gives() -> None:
    from results.reference import map_published_name

    for published, spec in [
        ("alexnet_torchvision", "torchvision:alexnet.IMAGENET1K_V1"),
        ("resnet50.a1_in1k", "timm:resnet50.a1_in1k"),
        ("CLIP_ViT-B~32", "open_clip:ViT-B-32/openai"),
        ("CLIP_ViT-L~14@336px", "open_clip:ViT-L-14-336/openai"),
        ("CLIP_RN50x4", "open_clip:RN50x4/openai"),
    ]:
        assert map_published_name(published)[0] == resolve(spec)[0].model_id, published


def test_model_metadata_in_the_run_config(tmp_path: Path) -> None:
    from pipelines.engine.run_config import parse_config

    raw = {"models": ["timm:resnet18@random"], "datasets": {"val": {"kind": "id", "root": str(tmp_path)}}}
    (tmp_path / "regimes.csv").write_text("model,distilled\ntimm-resnet18-random,true\n")
    config = parse_config({**raw, "model_metadata": "regimes.csv"}, tmp_path)
    assert config.metadata_overrides.entries == {"timm-resnet18-random": {"distilled": True}}
    assert parse_config(raw, tmp_path).metadata_overrides is None
    with pytest.raises(UserError, match="override file not found"):
        parse_config({**raw, "model_metadata": "missing.toml"}, tmp_path)
