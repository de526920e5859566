"""The ``open_clip`` source: open_clip models as zero-shot ImageNet-1k classifiers.

Specs: ``open_clip:<arch>[/<pretrained>][?templates=7|80]`` and ``open_clip:<arch>@random``. The zero-shot
model itself (prompt templates, class vectors and their cache, :class:`~pipelines.zoo.clip_zeroshot.ClipZeroShot`)
lives in :mod:`pipelines.zoo.clip_zeroshot`, imported here inside the functions because it imports torch.
"""

from __future__ import annotations

from pipelines.zoo.registry import ModelSpec, Resolution, Source, register_source


def _resolve(spec: str, name: str) -> Resolution:
    import pipelines.zoo.clip_zeroshot as clip_zeroshot

    return Resolution([clip_zeroshot.resolve_open_clip(spec, name)])


def _architecture(ms: ModelSpec):
    import pipelines.zoo.clip_zeroshot as clip_zeroshot

    return clip_zeroshot.clip_architecture(ms)


def _build(ms: ModelSpec):
    import pipelines.zoo.clip_zeroshot as clip_zeroshot

    return clip_zeroshot.build_zero_shot(ms)


SOURCE = register_source(Source("open_clip", _resolve, _build, _architecture))
