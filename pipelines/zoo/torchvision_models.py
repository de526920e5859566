"""The ``torchvision`` source: torchvision's classification weights enums and architectures.

Specs: ``torchvision:<model>[.<WEIGHTS>]`` (bare model = its DEFAULT weights), ``torchvision:<pattern>``
(wildcard over ``<model>.<WEIGHTS>``; weights without 1,000 categories skipped), ``torchvision:<model>@random``.
The preprocessing equals ``weights.transforms()``. torchvision and torch are imported inside the functions.
"""

from __future__ import annotations

import fnmatch
import math

from pipelines.errors import UserError
from pipelines.zoo.registry import (
    IMAGENET_NUM_CLASSES,
    RANDOM_WEIGHTS_SEED,
    ModelSpec,
    Preprocess,
    Resolution,
    SkippedWeights,
    Source,
    close_matches_hint,
    is_wildcard,
    register_source,
    split_random,
)


def _preprocess(weights) -> Preprocess:
    """Our :class:`Preprocess` equal to ``weights.transforms()`` (resize shortest side, centre crop)."""
    transform = weights.transforms()
    crop = int(transform.crop_size[0])
    resize = int(transform.resize_size[0])
    crop_pct = crop / resize
    if math.floor(crop / crop_pct) != resize:  # our decode resizes to floor(crop / crop_pct), as timm does
        crop_pct = math.nextafter(crop_pct, 0.0)
    return Preprocess(
        input_size=crop,
        crop_pct=crop_pct,
        crop_mode="center",
        interpolation=transform.interpolation.value,
        mean=tuple(float(v) for v in transform.mean),
        std=tuple(float(v) for v in transform.std),
    )


def _weights_reason(weights) -> str | None:
    categories = weights.meta.get("categories")
    if categories is None:
        return "its weights carry no classifier categories (feature-extractor weights)"
    if len(categories) != IMAGENET_NUM_CLASSES:
        return f"its head has {len(categories)} classes, not the 1,000 ImageNet-1k classes"
    return None


def _spec(spec: str, architecture: str, weights, pretrained: bool) -> ModelSpec:
    cfg = {
        "weights": str(weights),
        "transforms": repr(weights.transforms()).replace("\n", " "),
        **{k: v for k, v in weights.meta.items() if k in ("num_params", "min_size", "recipe", "_metrics", "_ops")},
    }
    return ModelSpec(
        spec=spec,
        source="torchvision",
        name=architecture,
        pretrained_tag=weights.name if pretrained else None,
        pretrained=pretrained,
        preprocess=_preprocess(weights),
        pretrained_cfg=cfg,
        params=int(weights.meta["num_params"]) if "num_params" in weights.meta else None,
    )


def _resolve(spec: str, name: str) -> Resolution:
    from torchvision import models

    name, random_weights = split_random(name)
    architectures = models.list_models(module=models)
    if is_wildcard(name) and random_weights:
        matched_architectures = fnmatch.filter(architectures, name)
        if not matched_architectures:
            raise UserError(f"no torchvision classification model matches {name!r}")
        return Resolution([
            _spec(spec, arch, models.get_model_weights(arch).DEFAULT, pretrained=False)
            for arch in matched_architectures
        ])
    if is_wildcard(name):
        candidates = [(arch, weights) for arch in architectures for weights in models.get_model_weights(arch)]
        matched = [(arch, w) for arch, w in candidates if fnmatch.fnmatchcase(f"{arch}.{w.name}", name)]
        if not matched:
            raise UserError(f"no torchvision classification weights match {name!r}")
        specs, skipped = [], []
        for arch, weights in matched:
            reason = _weights_reason(weights)
            if reason is not None:
                skipped.append(SkippedWeights(f"torchvision:{arch}.{weights.name}", reason))
            else:
                specs.append(_spec(spec, arch, weights, pretrained=True))
        return Resolution(specs, skipped)
    architecture, _, weights_name = name.partition(".")
    if architecture not in architectures:
        raise UserError(
            f"unknown torchvision classification model {architecture!r}"
            f"{close_matches_hint(architecture, architectures)}"
        )
    enum = models.get_model_weights(architecture)
    members = enum.__members__
    if weights_name and weights_name not in members:
        raise UserError(
            f"torchvision model {architecture!r} has no weights {weights_name!r}; choose one of "
            + ", ".join(members)
        )
    weights = members[weights_name or "DEFAULT"]
    reason = _weights_reason(weights)
    if reason is not None and not random_weights:
        raise UserError(f"torchvision:{architecture}.{weights.name} is not an ImageNet-1k classifier: {reason}")
    return Resolution([_spec(spec, architecture, weights, pretrained=not random_weights)])


def _architecture(ms: ModelSpec):
    from torchvision import models

    return models.get_model(ms.name, weights=None, num_classes=IMAGENET_NUM_CLASSES)


def _build(ms: ModelSpec):
    import torch
    from torchvision import models

    if not ms.pretrained:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return _architecture(ms)
    try:
        return models.get_model(ms.name, weights=ms.pretrained_tag)
    except Exception as exc:  # download failures surface as many exception types
        raise UserError(
            f"could not load torchvision weights {ms.name}.{ms.pretrained_tag} ({type(exc).__name__}); on an "
            "offline machine pre-stage them in the torch hub cache (TORCH_HOME) first"
        ) from exc


SOURCE = register_source(Source("torchvision", _resolve, _build, _architecture))
