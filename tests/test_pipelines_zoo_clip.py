"""open_clip zero-shot heads with random weights: 1,000 logits = 100·cos in timm's class order, text cache.

A tiny architecture is registered through open_clip's own ``add_model_config`` so that encoding the
7,000 prompts takes about a second on a CPU; the real architectures go through the same code.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

import pipelines.zoo.clip_zeroshot as clip_zeroshot
from pipelines.zoo import build_model, resolve

TINY = "uebench-tiny-test-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(spec, model) of the tiny random-weight CLIP, with the text cache in a temporary folder."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip")
    config = folder / f"{TINY}.json"
    config.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(clip_zeroshot.CACHE_ENV, str(folder / "cache"))
        clip_zeroshot._MEMORY_CACHE.clear()
        (ms,) = resolve(f"open_clip:{TINY}@random")
        yield ms, build_model(ms)
        clip_zeroshot._MEMORY_CACHE.clear()


def test_default_templates_are_the_seven_of_the_spec_and_all_80_are_openais():
    import open_clip

    seven = clip_zeroshot.zero_shot_templates("7")
    everything = clip_zeroshot.zero_shot_templates("80")
    assert len(seven) == 7 and len(everything) == 80 and set(seven) <= set(everything)
    assert "the {} in a video game." in seven
    assert everything[0] == open_clip.OPENAI_IMAGENET_TEMPLATES[0]("{}")


def test_classnames_are_in_timms_imagenet_order():
    """Oracle: timm's own label descriptions share a word with the aligned name far more than when shifted."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    names = clip_zeroshot.imagenet_classnames()

    def agreement(shift: int) -> float:
        words = [set(re.findall(r"[a-z]+", s.lower())) for s in names]
        return sum(bool(words[i] & set(re.findall(r"[a-z]+", info.index_to_description((i + shift) % 1000).lower())))
                   for i in range(1000)) / 1000

    assert len(names) == 1000
    assert agreement(0) > 0.9 and agreement(1) < 0.3


def test_zero_shot_logits_are_100_cos_to_template_averaged_class_vectors(tiny):
    import open_clip

    _, model = tiny
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (3, 1000) and logits.dtype == torch.float32
        # independent oracle: per class, encode each prompt alone, normalise, average, normalise
        tokenizer = open_clip.get_tokenizer(TINY)
        classes = [0, 417, 999]
        names = clip_zeroshot.imagenet_classnames()
        vectors = []
        for c in classes:
            per_template = [model.clip.encode_text(tokenizer([t.format(names[c])]))[0]
                            for t in clip_zeroshot.DEFAULT_TEMPLATES]
            vectors.append(F.normalize(torch.stack([F.normalize(v, dim=0) for v in per_template]).mean(0), dim=0))
        image = model.clip.encode_image(x)
        expected = 100 * F.cosine_similarity(image[:, None, :], torch.stack(vectors)[None], dim=-1)
    assert torch.allclose(model.class_vectors[classes], torch.stack(vectors), atol=1e-5)
    assert torch.allclose(logits[:, classes], expected, atol=1e-4)
    assert logits.abs().max() <= 100 + 1e-4
    assert model.learned_logit_scale == pytest.approx(1 / 0.07, rel=1e-5)  # open_clip's initial scale


def test_text_embeddings_are_cached_on_disk_and_reloaded(tiny, monkeypatch):
    ms, model = tiny
    files = list(clip_zeroshot.cache_dir().glob(f"{ms.model_id}-*.pt"))
    assert len(files) == 1
    clip_zeroshot._MEMORY_CACHE.clear()

    def no_encoding(*args, **kwargs):
        raise AssertionError("text embeddings were recomputed despite the disk cache")

    monkeypatch.setattr(clip_zeroshot, "class_embeddings", no_encoding)
    again = build_model(ms)
    assert torch.equal(again.class_vectors, model.class_vectors)
    assert torch.equal(torch.load(files[0], weights_only=True), model.class_vectors)


def test_all_80_templates_are_a_separate_model_and_cache_entry(tiny, monkeypatch):
    _, model = tiny
    (ms80,) = resolve(f"open_clip:{TINY}@random?templates=80")
    assert ms80.model_id == f"open_clip-{TINY}-templates80-random"
    seen = {}

    def spy(clip_model, tokenizer, classnames, templates, device="cpu"):
        seen["templates"] = templates
        return F.normalize(torch.randn(len(classnames), 16, generator=torch.Generator().manual_seed(1)), dim=-1)

    monkeypatch.setattr(clip_zeroshot, "class_embeddings", spy)
    vectors80 = clip_zeroshot.cached_class_embeddings(ms80, model.clip)
    assert seen["templates"] == clip_zeroshot.zero_shot_templates("80")
    assert vectors80.shape == model.class_vectors.shape
    assert len(list(clip_zeroshot.cache_dir().glob("*.pt"))) == 2
