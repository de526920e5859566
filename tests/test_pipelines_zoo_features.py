"""pipelines.zoo.features: one forward pass gives the library's own pre-logit features and unchanged logits.

Oracles: timm's ``reset_classifier(0)`` model (its forward then returns the pre-logit features), a torchvision
copy whose final Linear is replaced by ``nn.Identity``, EfficientNet-Lite's ``extract_features`` + pooling,
open_clip's ``encode_image``; logits against ``model(x)``; the head against ``features @ W.T + b``.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

import pipelines.zoo.clip_zeroshot as clip_zeroshot
from pipelines.errors import UserError
from pipelines.zoo import build_model, resolve
from pipelines.zoo.features import feature_extractor, features_to_fp16, head_mismatch


def _batch(size: int, n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def _built(spec: str):
    (ms,) = resolve(spec)
    return ms, build_model(ms)


@pytest.mark.parametrize("arch", ["test_resnet", "test_vit", "test_efficientnet", "test_convnext"])
def test_timm_features_are_timms_pre_logits_and_logits_unchanged(arch):
    ms, model = _built(f"timm:{arch}@random")
    x = _batch(ms.preprocess.input_size)
    extractor = feature_extractor(model, ms.source)
    headless = copy.deepcopy(model)
    headless.reset_classifier(0)
    with torch.no_grad():
        logits, features = extractor(x)
        torch.testing.assert_close(logits, model(x), rtol=0, atol=0)
        torch.testing.assert_close(features, headless(x), rtol=1e-6, atol=1e-6)
    assert extractor.method == "timm_pre_logits" and features.shape == (3, extractor.head.feature_dim)
    assert head_mismatch(extractor.head, logits.numpy(), features.numpy()) < 1e-5


@pytest.mark.parametrize(("arch", "path"), [("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3")])
def test_torchvision_features_are_the_classifier_input(arch, path):
    ms, model = _built(f"torchvision:{arch}@random")
    x = _batch(64)
    extractor = feature_extractor(model, ms.source)
    headless = copy.deepcopy(model)
    parent, _, leaf = path.rpartition(".")
    setattr(headless.get_submodule(parent) if parent else headless, leaf, nn.Identity())
    with torch.no_grad():
        logits, features = extractor(x)
        torch.testing.assert_close(logits, model(x), rtol=0, atol=0)
        torch.testing.assert_close(features, headless(x), rtol=0, atol=0)
    assert extractor.method == f"classifier_input:{path}"
    assert head_mismatch(extractor.head, logits.numpy(), features.numpy()) < 1e-5
    assert not model.get_submodule(path)._forward_pre_hooks  # the hook lives only during the call


def test_efficientnet_lite_features_are_its_pooled_extract_features():
    ms, model = _built("efficientnet_lite:lite0")
    x = _batch(ms.preprocess.input_size, n=2)
    extractor = feature_extractor(model, ms.source)
    with torch.no_grad():
        logits, features = extractor(x)
        pooled = nn.functional.adaptive_avg_pool2d(model.extract_features(x), 1).flatten(1)
        torch.testing.assert_close(logits, model(x), rtol=0, atol=0)
        torch.testing.assert_close(features, pooled, rtol=1e-6, atol=1e-6)
    assert extractor.method == "classifier_input:_fc" and features.shape == (2, 1280)
    assert head_mismatch(extractor.head, logits.numpy(), features.numpy()) < 1e-5


TINY = "uebench-tiny-features-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def test_open_clip_features_are_the_image_embedding(tmp_path, monkeypatch):
    import open_clip

    config = tmp_path / f"{TINY}.json"
    config.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config)
    monkeypatch.setenv(clip_zeroshot.CACHE_ENV, str(tmp_path / "cache"))
    ms, model = _built(f"open_clip:{TINY}@random")
    x = _batch(32)
    extractor = feature_extractor(model, ms.source)
    with torch.no_grad():
        logits, features = extractor(x)
        torch.testing.assert_close(features, model.clip.encode_image(x), rtol=0, atol=0)
        torch.testing.assert_close(logits, model(x), rtol=0, atol=0)
    assert extractor.head is None and "not affine" in extractor.head_reason and features.shape == (3, 16)


def test_a_model_without_a_final_linear_is_refused():
    class ConvHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 1000, 1)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    with pytest.raises(UserError, match=r"no final nn\.Linear with 1000 outputs"):
        feature_extractor(ConvHead(), "torchvision")


def test_fp16_storage_rounds_within_half_precision_and_refuses_overflow():
    x = np.random.default_rng(0).normal(scale=30.0, size=(50, 20))
    stored = features_to_fp16(x)
    assert stored.dtype == np.float16
    np.testing.assert_allclose(stored.astype(np.float64), x, rtol=2.0**-11, atol=2.0**-24)
    with pytest.raises(ValueError, match="beyond float16"):
        features_to_fp16(np.array([[1.0, 7e4]]))
    with pytest.raises(ValueError, match="NaN"):
        features_to_fp16(np.array([[np.nan]]))
