"""The zoo's one source registry: every source a spec may name is found through one lookup, once."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import pipelines.zoo as zoo
from pipelines.errors import UserError
from pipelines.zoo import registry

ROOT = Path(__file__).resolve().parents[1]

# One random-weight (or shipped-weight) spec per source with the model id it must resolve to (docs/models.md).
SPEC_PER_SOURCE = {
    "timm": ("timm:resnet18@random", "timm-resnet18-random"),
    "torchvision": ("torchvision:resnet18@random", "torchvision-resnet18-random"),
    "open_clip": ("open_clip:RN50@random", "open_clip-RN50-random"),
    "efficientnet_lite": ("efficientnet_lite:lite0", "efficientnet_lite-lite0.in1k"),
}


def test_sources_are_the_documented_ones_in_order_with_file_last():
    assert zoo.SOURCES == ("timm", "torchvision", "open_clip", "efficientnet_lite", "file")
    assert zoo.FILE_SOURCE == "file"
    assert [s.name for s in registry.registered_sources()] == list(SPEC_PER_SOURCE)


@pytest.mark.parametrize("name", list(SPEC_PER_SOURCE))
def test_every_source_resolves_through_the_one_lookup(name):
    spec, model_id = SPEC_PER_SOURCE[name]
    source = registry.lookup_source(name, spec)
    assert source.name == name
    (ms,) = source.resolve(spec, spec.partition(":")[2]).specs
    assert (ms.source, ms.model_id) == (name, model_id)
    assert [m.model_id for m in zoo.resolve(spec)] == [model_id]


def test_unknown_source_error_names_the_spec_the_sources_and_close_matches():
    with pytest.raises(UserError) as info:
        zoo.resolve("timmm:resnet18")
    assert str(info.value) == (
        "unknown model source 'timmm' in 'timmm:resnet18'; known sources: timm, torchvision, open_clip, "
        "efficientnet_lite, file; close matches: timm"
    )


def test_a_source_name_registers_once_and_file_is_reserved(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    timm_source = registry.lookup_source("timm", "timm:x")
    with pytest.raises(ValueError, match="registered already"):
        registry.register_source(dataclasses.replace(timm_source))
    with pytest.raises(ValueError, match="cannot name a model source"):
        registry.register_source(dataclasses.replace(timm_source, name="file"))
    extra = registry.register_source(dataclasses.replace(timm_source, name="extra"))
    assert registry.lookup_source("extra", "extra:x") is extra
    assert registry.source_names()[-2:] == ("extra", "file")


def test_importing_the_zoo_loads_no_heavy_framework():
    code = (
        "import sys, pipelines.zoo\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'timm', 'open_clip') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
