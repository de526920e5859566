"""results.model_metadata: the training-regime rules on real model names, labelled by hand from their model cards."""

from __future__ import annotations

from pathlib import Path

import pytest

from results.model_metadata import FLAGS, METADATA_COLUMNS, ModelMetadata, classify, family, load_overrides, tokens
from results.schema import column_types

# (name, source, family, pre-training data, flags) — written from each model's card / paper, not from the rules:
# distilled = trained with a distillation teacher; self_supervised = SSL pre-training (DINO, MAE, MIM, SEER, BEiT);
# semi_supervised = semi-(weakly-)supervised (FB SSL/SWSL, Noisy Student, SSLD); clip = image-text pre-training;
# adversarial = adversarial training (AdvProp, adv/ens-adv Inception). Pre-training data = the first data set
# beyond ImageNet-1k the weights saw (in1k when none).
LABELLED: list[tuple[str, str | None, str, str | None, set[str]]] = [
    # timm, supervised ImageNet-1k
    ("resnet50.a1_in1k", "timm", "resnet", "in1k", set()),
    ("resnet50.tv_in1k", "timm", "resnet", "in1k", set()),
    ("resnet18.tv_in1k", "timm", "resnet", "in1k", set()),
    ("wide_resnet50_2.racm_in1k", "timm", "resnet", "in1k", set()),
    ("resnext50_32x4d.a1h_in1k", "timm", "resnet", "in1k", set()),
    ("seresnext50_32x4d.racm_in1k", "timm", "resnet", "in1k", set()),
    ("legacy_seresnet18.in1k", "timm", "resnet", "in1k", set()),
    ("convnext_tiny.fb_in1k", "timm", "convnext", "in1k", set()),
    ("efficientnet_b0.ra_in1k", "timm", "efficientnet", "in1k", set()),
    ("tf_efficientnetv2_s.in1k", "timm", "efficientnet", "in1k", set()),
    ("regnety_032.ra_in1k", "timm", "regnet", "in1k", set()),
    ("regnetx_002.pycls_in1k", "timm", "regnet", "in1k", set()),
    ("mobilenetv3_large_100.ra_in1k", "timm", "mobilenet", "in1k", set()),
    ("deit_base_patch16_224.fb_in1k", "timm", "deit", "in1k", set()),
    ("vit_base_patch16_224.augreg_in1k", "timm", "vit", "in1k", set()),
    ("vit_base_patch16_224.sam_in1k", "timm", "vit", "in1k", set()),
    ("swin_tiny_patch4_window7_224.ms_in1k", "timm", "swin", "in1k", set()),
    ("densenet121.tv_in1k", "timm", "densenet", "in1k", set()),
    ("inception_v3.tv_in1k", "timm", "inception", "in1k", set()),
    ("bat_resnext26ts.ch_in1k", "timm", "resnet", "in1k", set()),
    # ImageNet-21k / 22k / 12k pre-training
    ("vit_base_patch16_224.augreg_in21k_ft_in1k", "timm", "vit", "in21k", set()),
    ("vit_large_patch32_384.orig_in21k_ft_in1k", "timm", "vit", "in21k", set()),
    ("resnetv2_50x1_bit.goog_in21k_ft_in1k", "timm", "resnet", "in21k", set()),
    ("mobilenetv3_large_100.miil_in21k_ft_in1k", "timm", "mobilenet", "in21k", set()),
    ("convnext_base.fb_in22k_ft_in1k", "timm", "convnext", "in22k", set()),
    ("swin_base_patch4_window7_224.ms_in22k_ft_in1k", "timm", "swin", "in22k", set()),
    ("swinv2_base_window12to16_192to256.ms_in22k_ft_in1k", "timm", "swin", "in22k", set()),
    ("deit3_base_patch16_224.fb_in22k_ft_in1k", "timm", "deit", "in22k", set()),
    ("tf_efficientnetv2_xl.in21k_ft_in1k", "timm", "efficientnet", "in21k", set()),
    ("convnext_tiny.in12k_ft_in1k", "timm", "convnext", "in12k", set()),
    # knowledge distillation
    ("deit_base_distilled_patch16_224.fb_in1k", "timm", "deit", "in1k", {"distilled"}),
    ("deit_tiny_distilled_patch16_224.fb_in1k", "timm", "deit", "in1k", {"distilled"}),
    ("levit_128.fb_dist_in1k", "timm", "levit", "in1k", {"distilled"}),
    ("cait_s24_224.fb_dist_in1k", "timm", "cait", "in1k", {"distilled"}),
    ("xcit_small_12_p16_224.fb_dist_in1k", "timm", "xcit", "in1k", {"distilled"}),
    ("pit_b_distilled_224.in1k", "timm", "pit", "in1k", {"distilled"}),
    ("resmlp_12_224.fb_distilled_in1k", "timm", "resmlp", "in1k", {"distilled"}),
    ("tiny_vit_21m_224.dist_in22k_ft_in1k", "timm", "tiny_vit", "in22k", {"distilled"}),
    ("efficientformer_l1.snap_dist_in1k", "timm", "efficientformer", "in1k", {"distilled"}),
    ("fastvit_t8.apple_dist_in1k", "timm", "fastvit", "in1k", {"distilled"}),
    ("resnetv2_50x1_bit.goog_distilled_in1k", "timm", "resnet", "in1k", {"distilled"}),
    # semi-/weakly-supervised
    ("resnet50.fb_swsl_ig1b_ft_in1k", "timm", "resnet", "ig", {"semi_supervised"}),
    ("resnext50_32x4d.fb_ssl_yfcc100m_ft_in1k", "timm", "resnet", "yfcc", {"semi_supervised"}),
    ("resnet50.fb_ssl_yfcc100m_ft_in1k", "timm", "resnet", "yfcc", {"semi_supervised"}),
    ("tf_efficientnet_b0.ns_jft_in1k", "timm", "efficientnet", "jft", {"semi_supervised"}),
    ("tf_efficientnet_l2.ns_jft_in1k_475", "timm", "efficientnet", "jft", {"semi_supervised"}),
    ("resnext101_32x8d.fb_wsl_ig1b_ft_in1k", "timm", "resnet", "ig", set()),  # weakly (hashtag) supervised only
    ("regnety_1280.swag_ft_in1k", "timm", "regnet", "ig", set()),
    # self-supervised pre-training
    ("vit_base_patch16_224.mae", "timm", "vit", "in1k", {"self_supervised"}),
    ("vit_base_patch16_224.dino", "timm", "vit", "in1k", {"self_supervised"}),
    ("vit_small_patch14_dinov2.lvd142m", "timm", "vit", "lvd", {"self_supervised"}),
    ("beit_base_patch16_224.in22k_ft_in22k_in1k", "timm", "beit", "in22k", {"self_supervised"}),
    ("beitv2_base_patch16_224.in1k_ft_in22k_in1k", "timm", "beit", "in22k", {"self_supervised"}),
    ("beitv2_base_patch16_224.in1k_ft_in1k", "timm", "beit", "in1k", {"self_supervised"}),
    ("convnextv2_tiny.fcmae_ft_in1k", "timm", "convnext", "in1k", {"self_supervised"}),
    ("convnextv2_base.fcmae_ft_in22k_in1k", "timm", "convnext", "in22k", {"self_supervised"}),
    ("eva02_base_patch14_448.mim_in22k_ft_in22k_in1k", "timm", "eva", "in22k", {"self_supervised"}),
    ("regnety_640.seer_ft_in1k", "timm", "regnet", "ig", {"self_supervised"}),
    ("hiera_base_224.mae_in1k_ft_in1k", "timm", "hiera", "in1k", {"self_supervised"}),
    # CLIP pre-training (timm fine-tunes)
    ("vit_base_patch16_clip_224.openai_ft_in1k", "timm", "vit", "openai", {"clip"}),
    ("vit_base_patch16_clip_224.laion2b_ft_in12k_in1k", "timm", "vit", "laion", {"clip"}),
    ("convnext_base.clip_laion2b_augreg_ft_in1k", "timm", "convnext", "laion", {"clip"}),
    ("vit_base_patch32_clip_224.openai_ft_in12k_in1k", "timm", "vit", "openai", {"clip"}),
    ("vit_base_patch16_siglip_224.webli", "timm", "vit", "webli", {"clip"}),
    # adversarial training
    ("inception_v3.tf_adv_in1k", "timm", "inception", "in1k", {"adversarial"}),
    ("inception_resnet_v2.tf_ens_adv_in1k", "timm", "inception", "in1k", {"adversarial"}),
    ("tf_efficientnet_b0.ap_in1k", "timm", "efficientnet", "in1k", {"adversarial"}),
    ("tf_efficientnet_b3.ap_in1k", "timm", "efficientnet", "in1k", {"adversarial"}),
    ("tf_efficientnet_b7.ap_in1k", "timm", "efficientnet", "in1k", {"adversarial"}),
    # the old timm spellings of the C-OOD paper whose name says the data (the others: test_pipelines_zoo_metadata)
    ("ssl_resnet50", None, "resnet", "yfcc", {"semi_supervised"}),
    ("swsl_resnext101_32x8d", None, "resnet", "ig", {"semi_supervised"}),
    ("ig_resnext101_32x8d", None, "resnet", "ig", set()),
    ("tf_efficientnet_b7_ns", None, "efficientnet", "jft", {"semi_supervised"}),
    ("vit_base_patch16_224_in21k", None, "vit", "in21k", set()),
    ("convnext_base_in22ft1k", None, "convnext", "in22k", set()),
    ("vit_base_patch16_224_original", None, "vit", "in21k", set()),
    # torchvision
    ("resnet50.IMAGENET1K_V2", "torchvision", "resnet", "in1k", set()),
    ("alexnet.IMAGENET1K_V1", "torchvision", "alexnet", "in1k", set()),
    ("vit_b_16.IMAGENET1K_SWAG_E2E_V1", "torchvision", "vit", "ig", set()),
    ("regnet_y_16gf.IMAGENET1K_SWAG_LINEAR_V1", "torchvision", "regnet", "ig", set()),
    ("efficientnet_v2_s.IMAGENET1K_V1", "torchvision", "efficientnet", "in1k", set()),
    ("swin_v2_t.IMAGENET1K_V1", "torchvision", "swin", "in1k", set()),
    ("mobilenet_v3_large.IMAGENET1K_V2", "torchvision", "mobilenet", "in1k", set()),
    ("wide_resnet50_2.IMAGENET1K_V2", "torchvision", "resnet", "in1k", set()),
    ("convnext_tiny.IMAGENET1K_V1", "torchvision", "convnext", "in1k", set()),
    ("vgg16_bn.IMAGENET1K_V1", "torchvision", "vgg", "in1k", set()),
    # open_clip zero-shot (family clip)
    ("open_clip-ViT-B-32.laion2b_s34b_b79k", None, "clip", "laion", {"clip"}),
    ("open_clip-ViT-B-32.openai", None, "clip", "openai", {"clip"}),
    ("open_clip-ViT-L-14.datacomp_xl_s13b_b90k", None, "clip", "datacomp", {"clip"}),
    ("open_clip-RN50.yfcc15m", None, "clip", "yfcc", {"clip"}),
    ("open_clip-ViT-H-14-quickgelu.dfn5b", None, "clip", "dfn", {"clip"}),
    ("open_clip-ViT-B-16-quickgelu.metaclip_400m", None, "clip", "metaclip", {"clip"}),
    ("open_clip-EVA02-B-16.merged2b_s8b_b131k", None, "clip", "merged2b", {"clip"}),
    # the published tables' spellings
    ("alexnet_torchvision", None, "alexnet", "in1k", set()),
    ("resnet50_torchvision", None, "resnet", "in1k", set()),
    ("CLIP_ViT-B~32", None, "clip", "openai", {"clip"}),
    ("CLIP_ViT-L~14@336px", None, "clip", "openai", {"clip"}),
    ("CLIP_RN50x4", None, "clip", "openai", {"clip"}),
    # our model ids
    ("timm-resnet50.fb_swsl_ig1b_ft_in1k", None, "resnet", "ig", {"semi_supervised"}),
    ("torchvision-resnet50.IMAGENET1K_V2", None, "resnet", "in1k", set()),
    ("efficientnet_lite-lite0.in1k", None, "efficientnet", "in1k", set()),
]


def test_at_least_60_names_over_families_and_regimes() -> None:
    assert len(LABELLED) >= 60
    assert len({name for name, *_ in LABELLED}) == len(LABELLED)
    assert len({fam for _, _, fam, _, _ in LABELLED}) >= 15
    for flag in FLAGS:
        assert sum(flag in flags for *_, flags in LABELLED) >= 5, flag


@pytest.mark.parametrize(("name", "source", "family_", "pretraining", "flags"), LABELLED, ids=[n[0] for n in LABELLED])
def test_hand_labelled_names(name: str, source: str | None, family_: str, pretraining: str | None, flags: set) -> None:
    tag = None
    if source == "torchvision":
        name, tag = name.split(".")
    got = classify(name, source=source, tag=tag)
    assert (got.family, got.pretraining) == (family_, pretraining)
    assert {f for f in FLAGS if getattr(got, f)} == flags
    assert got.source == "rules"


def test_random_weights_have_a_family_but_no_regime() -> None:
    got = classify("deit_base_distilled_patch16_224", source="timm", pretrained=False)
    assert got == ModelMetadata(family="deit", pretraining=None)
    assert classify("timm-resnet18-random") == ModelMetadata(family="resnet", pretraining=None)


def test_config_stands_in_for_a_missing_tag_and_names_the_data() -> None:
    assert classify("resnet50", source="timm", cfg={"tag": "fb_ssl_yfcc100m_ft_in1k"}).semi_supervised
    hub = classify("ViT-B-32", source="open_clip", cfg={"hf_hub": "timm/vit_base_patch32_clip_224.laion2b_e16/"})
    assert hub.pretraining == "laion" and hub.clip


def test_tokens_and_family_rules() -> None:
    assert tokens("vit_base_patch16_clip_224.laion2b_ft_in12k_in1k") == [
        "vit", "base", "patch16", "clip", "224", "laion2b", "ft", "in12k", "in1k"]
    assert [family(a) for a in ("resnetv2_50", "convnextv2_atto", "mobilenetv4_conv_small", "levit_128")] == [
        "resnet", "convnext", "mobilenet", "levit"]


def test_metadata_columns_are_in_both_tables() -> None:
    for table in ("models", "reference_models"):
        assert set(METADATA_COLUMNS) <= set(column_types(table))
    assert list(ModelMetadata("x", None).row()) == list(METADATA_COLUMNS)


def test_override_files_toml_and_csv(tmp_path: Path) -> None:
    toml = tmp_path / "o.toml"
    toml.write_text('["timm-resnet50.a1_in1k"]\ndistilled = true\nfamily = "my_resnets"\n')
    overrides = load_overrides(toml)
    base = classify("timm-resnet50.a1_in1k")
    changed = overrides.apply(base, "timm-resnet50.a1_in1k")
    assert (changed.distilled, changed.family, changed.pretraining, changed.source) == (
        True, "my_resnets", "in1k", "override")
    assert overrides.apply(base, "other", None) is base
    csv = tmp_path / "o.csv"
    csv.write_text("model,pretraining,clip\nalexnet_torchvision,in21k,\nresnet50,,yes\n")
    overrides = load_overrides(csv)
    assert overrides.apply(classify("alexnet_torchvision"), "alexnet_torchvision").pretraining == "in21k"
    assert overrides.apply(classify("resnet50"), "resnet50").clip is True


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.toml", '["x"]\ncolour = "red"\n', "unknown field 'colour'"),
        ("b.toml", '["x"]\ndistilled = "maybe"\n', "distilled must be true or false"),
        ("c.toml", "x = 1\n", "must be a table of fields"),
        ("d.toml", "[x\n", "not valid TOML"),
        ("e.csv", "name,clip\nx,true\n", "needs a 'model' column"),
        ("f.json", "{}", "is .toml or .csv"),
    ],
)
def test_bad_override_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        load_overrides(tmp_path / name)
    with pytest.raises(ValueError, match="not found"):
        load_overrides(tmp_path / "missing.toml")


def test_sources_match_the_zoo() -> None:
    from pipelines.zoo import SOURCES as ZOO_SOURCES
    from pipelines.zoo.registry import FILE_SOURCE
    from results.model_metadata import SOURCES

    assert SOURCES == tuple(s for s in ZOO_SOURCES if s != FILE_SOURCE)
