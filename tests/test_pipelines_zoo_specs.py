"""Model spec resolution without weights: timm exact names and wildcards, the ImageNet-1k head filter,
torchvision weights enums, open_clip specs, file: lists, and close-match errors."""

from __future__ import annotations

import fnmatch

import pytest
import timm
import torch
from PIL import Image
from timm.models import get_pretrained_cfg

from pipelines.data.preprocess import crop_image, normalise
from pipelines.errors import UserError
from pipelines.zoo import count_params, non_1k_reason, resolve, resolve_all, resolve_with_skipped


@pytest.fixture(scope="module")
def odd_image() -> Image.Image:
    """A non-square photograph (odd sizes exercise rounding in resize and crop)."""
    import skimage.data

    return Image.fromarray(skimage.data.astronaut()).resize((301, 257))


def test_timm_exact_name_and_bare_architecture():
    (ms,) = resolve("timm:resnet50.a1_in1k")
    assert (ms.source, ms.name, ms.pretrained_tag, ms.pretrained) == ("timm", "resnet50", "a1_in1k", True)
    assert ms.model_id == "timm-resnet50.a1_in1k"
    cfg = get_pretrained_cfg("resnet50.a1_in1k")
    assert ms.preprocess.input_size == cfg.test_input_size[-1]  # eval at timm's test size
    assert ms.pretrained_cfg["hf_hub_id"] == cfg.hf_hub_id
    (bare,) = resolve("timm:resnet50")
    first_tag = timm.list_pretrained("resnet50.*")[0].split(".")[1]
    assert bare.pretrained_tag == get_pretrained_cfg("resnet50").tag == first_tag


def test_timm_wildcard_expands_over_pretrained_weights_and_skips_non_1k_heads():
    resolution = resolve_with_skipped("timm:vit_base_patch16_224*")
    names = {f"{ms.name}.{ms.pretrained_tag}" for ms in resolution.specs}
    skipped = {s.name.removeprefix("timm:"): s.reason for s in resolution.skipped}
    # brute force oracle: every pretrained name matching the pattern is either kept or skipped, never both
    expected = set(fnmatch.filter(timm.list_pretrained(), "vit_base_patch16_224*"))
    assert names | set(skipped) == expected and not names & set(skipped)
    assert all(get_pretrained_cfg(n).num_classes == 1000 for n in names)
    assert "vit_base_patch16_224.augreg2_in21k_ft_in1k" in names
    assert "21843 outputs" in skipped["vit_base_patch16_224.augreg_in21k"]
    assert "no classifier head" in skipped["vit_base_patch16_224.dino"]
    assert "11221 outputs" in skipped["vit_base_patch16_224_miil.in21k"]
    assert resolve("timm:vit_base_patch16_224*") == resolution.specs


@pytest.mark.parametrize(
    ("name", "cfg", "fragment"),
    [
        ("resmlp_12_224.fb_dino", {"num_classes": 1000}, "self-supervised"),
        ("x.fcmae", {"num_classes": 1000}, "self-supervised"),
        ("x.seer_ft", {"num_classes": 1000}, "self-supervised"),
        ("x.sw_in12k", {"num_classes": 1000}, "larger ImageNet label space"),
        ("inception_v3.tf", {"num_classes": 1001, "label_offset": 1}, "label_offset=1"),
        ("x.in22k", {"num_classes": 21841}, "ImageNet-21k"),
        ("x.clip", {"num_classes": 512}, "512 outputs"),
    ],
)
def test_non_1k_reasons(name, cfg, fragment):
    assert fragment in non_1k_reason(name, cfg)


@pytest.mark.parametrize(
    "name", ["convnextv2_atto.fcmae_ft_in1k", "resnet50.fb_ssl_yfcc100m_ft_in1k", "resnet50.a1_in1k"]
)
def test_supervised_in1k_fine_tunes_are_kept(name):
    assert non_1k_reason(name, get_pretrained_cfg(name).to_dict()) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("timm:vit_base_patch16_224.augreg_in21k", r"not an ImageNet-1k classifier: its head has 21843 outputs.*in1k"),
        ("timm:resmlp_12_224.fb_dino", "self-supervised"),
        ("timm:resnet50.a1_in1kk", "no pretrained tag 'a1_in1kk'; close matches: a1_in1k"),
        ("timm:resnt50", "unknown timm architecture 'resnt50'; close matches: resnet50"),
        ("timm:zzz_nothing*", "no pretrained timm weights match"),
        ("torchvision:resnet5O", "close matches: resnet50"),
        ("torchvision:resnet50.IMAGENET1K_V9", "IMAGENET1K_V2"),
        ("torchvision:vgg16.IMAGENET1K_FEATURES", "no classifier categories"),
        ("open_clip:ViT-B-3", "close matches: ViT-B-32"),
        ("open_clip:ViT-B-32/opnai", "no pretrained tag 'opnai'"),
        ("open_clip:ViT-B-32/openai?templates=9", "templates=7 or templates=80"),
        ("timmm:resnet50", "close matches: timm"),
    ],
)
def test_bad_specs_name_the_reason_on_one_line(spec, message):
    with pytest.raises(UserError, match=message) as info:
        resolve(spec)
    assert "\n" not in str(info.value)


def test_random_weight_specs_keep_working():
    (timm_random,) = resolve("timm:resnet18@random")
    (tv_random,) = resolve("torchvision:resnet18@random")
    assert not timm_random.pretrained and timm_random.model_id == "timm-resnet18-random"
    assert not tv_random.pretrained and tv_random.model_id == "torchvision-resnet18-random"
    assert len(resolve("timm:resnet1?@random")) == len(timm.list_models("resnet1?"))
    tv = resolve("torchvision:resnet*@random")
    assert [ms.model_id for ms in tv] == [f"torchvision-resnet{d}-random" for d in (101, 152, 18, 34, 50)]


def test_torchvision_spec_and_metadata():
    (ms,) = resolve("torchvision:resnet50.IMAGENET1K_V2")
    (default,) = resolve("torchvision:resnet50")
    assert ms.model_id == default.model_id == "torchvision-resnet50.IMAGENET1K_V2"
    assert ms.params == 25_557_032  # torchvision's published count for ResNet-50
    pre = ms.preprocess
    assert (pre.input_size, pre.crop_mode, pre.interpolation) == (224, "center", "bilinear")
    assert pre.crop_pct == pytest.approx(224 / 232)


@pytest.mark.parametrize(
    "spec", ["torchvision:resnet50.IMAGENET1K_V2", "torchvision:mobilenet_v3_small", "torchvision:efficientnet_b3"]
)
def test_torchvision_preprocess_equals_the_weights_transforms(spec, odd_image):
    from torchvision import models

    (ms,) = resolve(spec)
    reference = models.get_model_weights(ms.name)[ms.pretrained_tag].transforms()(odd_image)
    ours = normalise(torch.from_numpy(crop_image(odd_image, ms.preprocess)[None]), ms.preprocess)[0]
    assert ours.shape == reference.shape
    assert torch.allclose(ours, reference, atol=1e-6)


@pytest.mark.parametrize("spec", ["open_clip:ViT-B-32/openai", "open_clip:MobileCLIP-S1/datacompdr"])
def test_open_clip_preprocess_equals_open_clip_eval_transform(spec, odd_image):
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    (ms,) = resolve(spec)
    arch, tag = ms.name, ms.pretrained_tag
    cfg = PreprocessCfg(
        size=open_clip.get_model_config(arch)["vision_cfg"]["image_size"],
        **{k: v for k, v in open_clip.get_pretrained_cfg(arch, tag).items() if k in ("mean", "std", "interpolation",
                                                                                     "resize_mode")},
    )
    reference = image_transform_v2(cfg, is_train=False)(odd_image)
    ours = normalise(torch.from_numpy(crop_image(odd_image, ms.preprocess)[None]), ms.preprocess)[0]
    assert ours.shape == reference.shape
    assert torch.allclose(ours, reference, atol=1e-6)


def test_open_clip_specs():
    (ms,) = resolve("open_clip:ViT-B-32/openai")
    (bare,) = resolve("open_clip:ViT-B-32")
    (all80,) = resolve("open_clip:ViT-B-32/openai?templates=80")
    (rand,) = resolve("open_clip:RN50@random")
    assert ms.model_id == bare.model_id == "open_clip-ViT-B-32.openai"
    assert all80.model_id == "open_clip-ViT-B-32.openai-templates80"
    assert rand.model_id == "open_clip-RN50-random" and not rand.pretrained
    assert ms.pretrained_cfg["quick_gelu"] is True  # OpenAI weights were trained with QuickGELU


def test_count_params_on_meta_device_matches_a_real_build():
    (ms,) = resolve("timm:resnet18.a1_in1k")
    real = sum(p.numel() for p in timm.create_model("resnet18", pretrained=False).parameters())
    assert count_params(ms) == real == 11_689_512


def test_file_lists_nest_comment_and_deduplicate(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    inner = "timm:resnet18@random  # trailing comment\n\ntorchvision:resnet18@random\n"
    (tmp_path / "sub" / "inner.txt").write_text(inner)
    (tmp_path / "outer.txt").write_text("# header\nfile:sub/inner.txt\ntimm:resnet18@random\nefficientnet_lite:lite0\n")
    monkeypatch.chdir(tmp_path)
    ids = [ms.model_id for ms in resolve_all(["file:outer.txt"])]
    assert ids == ["timm-resnet18-random", "torchvision-resnet18-random", "efficientnet_lite-lite0.in1k"]
    assert len(resolve("file:outer.txt")) == 4  # resolve keeps duplicates, resolve_all drops them


def test_file_list_cycles_and_bad_lines_are_one_line_errors(tmp_path):
    (tmp_path / "a.txt").write_text("file:b.txt\n")
    (tmp_path / "b.txt").write_text("timm:resnet18@random\nfile:a.txt\n")
    with pytest.raises(UserError, match="cycle") as info:
        resolve(f"file:{tmp_path / 'a.txt'}")
    assert "\n" not in str(info.value)
    (tmp_path / "bad.txt").write_text("timm:resnet18@random\ntimm:resnt18\n")
    with pytest.raises(UserError, match=r"bad\.txt:2: unknown timm architecture"):
        resolve(f"file:{tmp_path / 'bad.txt'}")
    with pytest.raises(UserError, match="cannot read model list"):
        resolve(f"file:{tmp_path / 'missing.txt'}")


def test_random_torchvision_and_timm_builds_emit_1000_logits_deterministically():
    from pipelines.zoo import build_model

    for spec in ("torchvision:mobilenet_v3_small@random", "timm:mobilenetv3_small_100@random"):
        (ms,) = resolve(spec)
        a, b = build_model(ms), build_model(ms)
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            assert torch.equal(a(x), b(x)) and a(x).shape == (2, 1000)
        assert count_params(ms) == sum(p.numel() for p in a.parameters())
