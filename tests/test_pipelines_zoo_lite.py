"""The real pretrained EfficientNet-Lite weights, through the pipeline's own loading and preprocessing path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.data.datasets import imagenet1k_wnids
from pipelines.data.preprocess import crop_image, normalise
from pipelines.zoo import build_model, resolve

# tabby, tiger cat, Egyptian cat, Persian, Siamese
DOMESTIC_CATS = {"n02123045", "n02123159", "n02124075", "n02123394", "n02123597"}
ESPRESSO = "n07920052"


@pytest.fixture(scope="module")
def lite0():
    (spec,) = resolve("efficientnet_lite:lite0")
    return spec, build_model(spec)


def _top5(spec, model, array: np.ndarray) -> set[str]:
    crop = crop_image(Image.fromarray(array), spec.preprocess)
    with torch.inference_mode():
        logits = model(normalise(torch.from_numpy(crop[None]), spec.preprocess))
    wnids = imagenet1k_wnids()
    return {wnids[i] for i in logits[0].topk(5).indices.tolist()}


def test_lite0_recognises_the_scikit_image_cat_and_coffee(lite0):
    import skimage.data

    spec, model = lite0
    assert _top5(spec, model, skimage.data.chelsea()) & DOMESTIC_CATS
    assert ESPRESSO in _top5(spec, model, skimage.data.coffee())


def test_lite_preprocessing_matches_timm_eval_transform(lite0):
    """Our decode (uint8 crop) + on-device normalise equals timm's full eval transform."""
    import skimage.data
    from timm.data import create_transform

    spec, _ = lite0
    pre = spec.preprocess
    image = Image.fromarray(skimage.data.astronaut())
    reference = create_transform(
        input_size=(3, pre.input_size, pre.input_size), is_training=False, interpolation=pre.interpolation,
        mean=pre.mean, std=pre.std, crop_pct=pre.crop_pct, crop_mode=pre.crop_mode,
    )(image)
    crop = crop_image(image, pre)
    ours = normalise(torch.from_numpy(crop[None]), pre)[0]
    assert ours.shape == reference.shape == (3, pre.input_size, pre.input_size)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_weights_are_loaded_safely_and_pinned(lite0):
    from pipelines.zoo import weights_fingerprint

    spec, model = lite0
    again = build_model(spec)
    assert weights_fingerprint(model) == weights_fingerprint(again)
    assert spec.model_id == "efficientnet_lite-lite0.in1k"


def test_random_timm_architecture_is_deterministic():
    (spec,) = resolve("timm:mobilenetv3_small_100@random")
    a, b = build_model(spec), build_model(spec)
    x = torch.zeros(1, 3, spec.preprocess.input_size, spec.preprocess.input_size)
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))
    assert a(x).shape == (1, 1000)
    assert not spec.pretrained and spec.model_id.endswith("-random")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("resnet50", "SOURCE:NAME"),
        ("nosuch:thing", "unknown model source"),
        ("timm:resnet5O", "close matches"),
        ("efficientnet_lite:lite9", "lite0"),
    ],
)
def test_bad_specs_give_one_line_errors(spec, message):
    from pipelines.errors import UserError

    with pytest.raises(UserError, match=message) as info:
        resolve(spec)
    assert "\n" not in str(info.value)
