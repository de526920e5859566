"""The ``timm`` source: timm's pretrained weights and architectures, refusing heads that are not ImageNet-1k.

Specs: ``timm:<architecture>[.<tag>]`` (bare name = the architecture's default tag), ``timm:<pattern>``
(wildcard over pretrained weights; non-1k heads skipped with :func:`non_1k_reason`),
``timm:<architecture>@random``. The preprocessing is read from the weights' pretrained config with timm's
own ``resolve_data_config`` (test size), without instantiating the network. timm and torch are imported
inside the functions that need them.
"""

from __future__ import annotations

from typing import Any

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

# Head sizes of the non-1k label spaces found among timm's pretrained weights (ecosystem.md §2).
_KNOWN_LABEL_SPACES = {
    21841: "ImageNet-21k (fall11)",
    21842: "ImageNet-22k",
    21843: "ImageNet-21k (winter21)",
    19168: "ImageNet-21k (inw21k)",
    11821: "ImageNet-12k",
    11221: "ImageNet-21k-P (MIIL)",
    1001: "ImageNet-1k plus a background class",
}
_NON_1K_TAG_ENDINGS = ("in21k", "in22k", "in12k", "inw21k")
_SELF_SUPERVISED_TAG_WORDS = ("dino", "fcmae", "seer", "mim", "mae")


def non_1k_reason(name: str, cfg: dict[str, Any]) -> str | None:
    """Why the weights ``name`` (``architecture.tag``) with pretrained config ``cfg`` are not an ImageNet-1k
    classifier emitting 1,000 logits in timm's order, or None when they are.

    Refused: a ``label_offset`` (background class first), a head with other than 1,000 outputs (in21k/in22k/
    in12k heads, CLIP image towers, feature-only weights), a tag ending in a 21k/22k/12k dataset, and
    self-supervised tags (dino, fcmae, seer, mim, mae) without an ``in1k`` fine-tune.
    """
    num_classes = cfg.get("num_classes", IMAGENET_NUM_CLASSES)
    label_offset = cfg.get("label_offset")
    if label_offset:
        return (
            f"its {num_classes}-class head puts a background class first (label_offset={label_offset}), so its "
            "logits are not in ImageNet-1k order"
        )
    if num_classes == 0:
        return "it has no classifier head (feature-extractor or self-supervised weights)"
    if num_classes != IMAGENET_NUM_CLASSES:
        space = _KNOWN_LABEL_SPACES.get(num_classes, "an image-text embedding or another label space")
        return f"its head has {num_classes} outputs ({space}), not the 1,000 ImageNet-1k classes"
    tag = name.partition(".")[2]
    if tag.endswith(_NON_1K_TAG_ENDINGS):
        return f"its tag {tag!r} says the head was trained on a larger ImageNet label space, not ImageNet-1k"
    words = tag.split("_")
    if "in1k" not in words and any(w.startswith(_SELF_SUPERVISED_TAG_WORDS) for w in words):
        return f"its tag {tag!r} marks self-supervised weights without a supervised ImageNet-1k head"
    return None


def _preprocess(cfg: dict[str, Any]) -> Preprocess:
    from timm.data import resolve_data_config

    data = resolve_data_config(pretrained_cfg=cfg, use_test_size=True)
    return Preprocess(
        input_size=int(data["input_size"][-1]),
        crop_pct=float(data["crop_pct"]),
        crop_mode=str(data.get("crop_mode", "center")),
        interpolation=str(data["interpolation"]),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
    )


def _cfg(name: str) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def _spec(spec: str, architecture: str, tag: str | None, cfg: dict[str, Any]) -> ModelSpec:
    return ModelSpec(
        spec=spec,
        source="timm",
        name=architecture,
        pretrained_tag=tag,
        pretrained=tag is not None,
        preprocess=_preprocess(cfg),
        pretrained_cfg=cfg,
    )


def _resolve_wildcard(spec: str, pattern: str, random_weights: bool) -> Resolution:
    import timm

    if random_weights:
        architectures = timm.list_models(pattern)
        if not architectures:
            raise UserError(f"no timm architecture matches {pattern!r}")
        return Resolution([_spec(spec, arch, None, _cfg(arch)) for arch in architectures])
    names = timm.list_pretrained(pattern)
    if not names:
        hint = close_matches_hint(pattern.strip("*?"), timm.list_models())
        raise UserError(f"no pretrained timm weights match {pattern!r}{hint}")
    specs, skipped = [], []
    for name in names:
        cfg = _cfg(name)
        reason = non_1k_reason(name, cfg)
        if reason is not None:
            skipped.append(SkippedWeights(f"timm:{name}", reason))
            continue
        architecture, _, tag = name.partition(".")
        specs.append(_spec(spec, architecture, tag, cfg))
    return Resolution(specs, skipped)


def _resolve(spec: str, name: str) -> Resolution:
    import timm

    name, random_weights = split_random(name)
    if is_wildcard(name):
        return _resolve_wildcard(spec, name, random_weights)
    architecture, _, tag = name.partition(".")
    architectures = timm.list_models()
    if architecture not in architectures:
        raise UserError(f"unknown timm architecture {architecture!r}{close_matches_hint(architecture, architectures)}")
    tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{architecture}.*")]
    if tag and tag not in tags:
        raise UserError(
            f"timm architecture {architecture!r} has no pretrained tag {tag!r}"
            + (close_matches_hint(tag, tags) if tags else "; it has no pretrained weights")
        )
    if random_weights:
        return Resolution([_spec(spec, architecture, None, _cfg(name))])
    if not tags:
        raise UserError(
            f"timm architecture {architecture!r} has no pretrained weights; use timm:{architecture}@random "
            "for its random-weight architecture"
        )
    cfg = _cfg(name)
    tag = tag or cfg["tag"]
    reason = non_1k_reason(f"{architecture}.{tag}", cfg)
    if reason is not None:
        usable = [t for t in tags if non_1k_reason(f"{architecture}.{t}", _cfg(f"{architecture}.{t}")) is None]
        hint = f"; its ImageNet-1k tags: {', '.join(usable)}" if usable else f"; use timm:{architecture}@random"
        raise UserError(f"timm:{architecture}.{tag} is not an ImageNet-1k classifier: {reason}{hint}")
    return Resolution([_spec(spec, architecture, tag, cfg)])


def _architecture(ms: ModelSpec, **kwargs: Any):
    import timm

    return timm.create_model(ms.name, pretrained=False, num_classes=IMAGENET_NUM_CLASSES, **kwargs)


def _build(ms: ModelSpec, drop_rate: float | None = None):
    import timm
    import torch

    kwargs = {} if drop_rate is None else {"drop_rate": drop_rate}
    if not ms.pretrained:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return _architecture(ms, **kwargs)
    name = f"{ms.name}.{ms.pretrained_tag}"
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # hub/network failures surface as many exception types
        raise UserError(
            f"could not load pretrained weights for timm:{name} ({type(exc).__name__}); on an offline machine "
            "pre-stage them in the Hugging Face cache (HF_HOME) first"
        ) from exc


SOURCE = register_source(Source("timm", _resolve, _build, _architecture, build_with_dropout=_build))


def published_timm_name(name: str) -> tuple[str, str] | None:
    """The current timm ``architecture.tag`` of a bare timm name as the papers wrote it (timm 0.4–0.6 spellings),
    and how it was found: ``timm_renamed`` (timm's table of renamed models: ``ssl_resnet50`` ->
    ``resnet50.fb_ssl_yfcc100m_ft_in1k``) or ``timm_default_tag`` (an architecture without a tag: timm's default
    pretrained tag today, which may be other weights than the paper's); None when timm knows neither.
    For :func:`results.reference.reference_models`."""
    from timm.models import _registry

    new = _registry._deprecated_models.get(name)  # {old name: new name}, filled as timm imports its models
    if new:
        if "." not in new:
            tag = _cfg(new).get("tag")
            new = f"{new}.{tag}" if tag else new
        return (new, "timm_renamed") if "." in new else None
    if "." in name or not _registry.is_model(name) or not _registry.is_model_pretrained(name):
        return None
    tag = _cfg(name).get("tag")
    return (f"{name}.{tag}", "timm_default_tag") if tag else None
