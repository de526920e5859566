"""``uebench models``: resolved specs with their preprocessing and the skipped non-1k weights, no weights loaded."""

from __future__ import annotations

import dataclasses
import fnmatch

import pytest
import timm
from timm.models import get_pretrained_cfg

from pipelines.cli import main
from pipelines.zoo import registry


@pytest.fixture(autouse=True)
def no_weight_loading(monkeypatch):
    def refuse(ms):
        raise AssertionError(f"uebench models loaded weights for {ms.model_id}")

    for source in registry.registered_sources():
        monkeypatch.setitem(registry._REGISTRY, source.name, dataclasses.replace(source, build=refuse))


def test_models_lists_wildcard_matches_with_preprocessing_and_skip_count(capsys):
    assert main(["models", "timm:vit_base_patch16_224.*", "torchvision:resnet50.IMAGENET1K_V2", "--params"]) == 0
    out = capsys.readouterr().out
    names = fnmatch.filter(timm.list_pretrained(), "vit_base_patch16_224.*")
    kept = [n for n in names if get_pretrained_cfg(n).num_classes == 1000 and "dino" not in n]
    assert f"{len(kept) + 1} model(s)" in out
    assert f"skipped {len(names) - len(kept)} pretrained weight(s)" in out
    for n in kept:
        assert f"timm-{n}" in out
    assert "torchvision-resnet50.IMAGENET1K_V2" in out and "25,557,032" in out and "0.9655" in out
    assert "86,567,656" in out  # ViT-B/16 parameter count, counted on the meta device


def test_models_skipped_lists_reasons(capsys):
    assert main(["models", "timm:vit_base_patch16_224.*", "--skipped"]) == 0
    out = capsys.readouterr().out
    assert "timm:vit_base_patch16_224.augreg_in21k: its head has 21843 outputs" in out


def test_models_without_pattern_lists_the_offline_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for variant, size in (("lite0", "224"), ("lite1", "240"), ("lite2", "260")):
        assert f"efficientnet_lite-{variant}.in1k" in out and size in out


def test_models_bad_spec_is_a_one_line_error(capsys):
    assert main(["models", "timm:vit_base_patch16_224.augreg_in21k"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: timm:vit_base_patch16_224.augreg_in21k is not an ImageNet-1k classifier")
    assert err.count("\n") == 1
