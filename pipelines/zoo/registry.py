"""The zoo's shared types and its one registry of model sources.

A model source (timm, torchvision, open_clip, efficientnet_lite) is one :class:`Source`: how it resolves the
name after ``source:`` into :class:`ModelSpec` s (no weights loaded), how it builds the network with its
weights, and how it builds the bare architecture (for :func:`pipelines.zoo.count_params` on the ``meta``
device). Each source module registers itself once through :func:`register_source`; everything else finds a
source through :func:`lookup_source`. ``file:`` (:data:`FILE_SOURCE`) is a pseudo-source handled by the spec
grammar (:mod:`pipelines.zoo.specs`), never registered.

Imports only the standard library and :mod:`pipelines.errors`: source modules import this one, never the
other way round.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.errors import UserError

RANDOM_SUFFIX = "@random"
RANDOM_WEIGHTS_SEED = 0
IMAGENET_NUM_CLASSES = 1000
WILDCARD_CHARS = "*?["
FILE_SOURCE = "file"


@dataclass(frozen=True)
class Preprocess:
    """A model's eval preprocessing: PIL resize + crop to ``input_size`` then per-channel normalisation.

    input_size: square crop side in pixels; crop_pct: crop side / resize side; crop_mode: center | squash |
    border; interpolation: PIL filter name; mean, std: per-channel values in [0, 1] pixel units.
    """

    input_size: int
    crop_pct: float
    crop_mode: str
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def signature(self) -> str:
        """Models with equal signatures share decoded uint8 crops (normalisation happens per model)."""
        return f"{self.input_size}px-crop{self.crop_pct:g}-{self.crop_mode}-{self.interpolation}"


@dataclass(frozen=True)
class ModelSpec:
    """One resolved model: where it comes from, its preprocessing and metadata (weights not loaded).

    params: parameter count when the source publishes it (torchvision weights meta), else None (the
    inference worker counts it once built; :func:`count_params` counts it without weights); variant: a
    non-default head option that changes the logits (open_clip ``templates80``), part of :attr:`model_id`.
    """

    spec: str
    source: str
    name: str
    pretrained_tag: str | None
    pretrained: bool
    preprocess: Preprocess
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    params: int | None = None
    variant: str | None = None

    @property
    def model_id(self) -> str:
        """Path-safe identifier used in output folders and database keys."""
        base = self.name if self.pretrained_tag is None else f"{self.name}.{self.pretrained_tag}"
        variant = f"-{self.variant}" if self.variant else ""
        suffix = "" if self.pretrained else "-random"
        return f"{self.source}-{base}{variant}{suffix}".replace("/", "~")

    def row(self) -> dict[str, Any]:
        """The ``models`` table row (without ``params``/``weights_sha256``, known only once built)."""
        pre = asdict(self.preprocess)
        return {
            "model_id": self.model_id,
            "spec": self.spec,
            "source": self.source,
            "name": self.name,
            "pretrained_tag": self.pretrained_tag,
            "pretrained": self.pretrained,
            "input_size": pre["input_size"],
            "crop_pct": pre["crop_pct"],
            "crop_mode": pre["crop_mode"],
            "interpolation": pre["interpolation"],
            "mean": list(pre["mean"]),
            "std": list(pre["std"]),
            "preprocess_signature": self.preprocess.signature,
        }


@dataclass(frozen=True)
class SkippedWeights:
    """Pretrained weights a wildcard matched but left out, with the reason (not an ImageNet-1k classifier)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Resolution:
    """Result of resolving one spec: the usable models and the weights a wildcard skipped."""

    specs: list[ModelSpec]
    skipped: list[SkippedWeights] = field(default_factory=list)


def close_matches_hint(word: str, candidates: list[str]) -> str:
    """``"; close matches: a, b"`` for up to three candidates close to ``word``, or ``""``."""
    close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
    return f"; close matches: {', '.join(close)}" if close else ""


def split_random(name: str) -> tuple[str, bool]:
    """``name`` without a trailing :data:`RANDOM_SUFFIX`, and whether it had one."""
    if name.endswith(RANDOM_SUFFIX):
        return name[: -len(RANDOM_SUFFIX)], True
    return name, False


def is_wildcard(name: str) -> bool:
    """Whether ``name`` holds a glob character (:data:`WILDCARD_CHARS`)."""
    return any(ch in name for ch in WILDCARD_CHARS)


@dataclass(frozen=True)
class Source:
    """One model source: the three things the zoo asks of it, keyed by ``name`` (the part before ``:``).

    resolve(spec, name) -> Resolution: ``spec`` the whole stripped spec string, ``name`` the part after
    ``source:``; raises UserError for unknown names or weights that are not an ImageNet-1k classifier.
    build(ms) -> module emitting ``(B, 1000)`` ImageNet-1k logits, weights loaded (random ones seeded with
    :data:`RANDOM_WEIGHTS_SEED`). architecture(ms) -> the bare network, weights uninitialised by us, built on
    torch's current default device. build_with_dropout(ms, drop_rate) -> as build, with the classifier-head
    dropout probability ``drop_rate``; None when the source has no such option.
    """

    name: str
    resolve: Callable[[str, str], Resolution]
    build: Callable[[ModelSpec], Any]
    architecture: Callable[[ModelSpec], Any]
    build_with_dropout: Callable[[ModelSpec, float], Any] | None = None


_REGISTRY: dict[str, Source] = {}


def register_source(source: Source) -> Source:
    """Add ``source`` to the registry (once per name; :data:`FILE_SOURCE` is reserved) and return it."""
    if source.name == FILE_SOURCE or ":" in source.name:
        raise ValueError(f"{source.name!r} cannot name a model source")
    if source.name in _REGISTRY:
        raise ValueError(f"model source {source.name!r} is registered already")
    _REGISTRY[source.name] = source
    return source


def registered_sources() -> tuple[Source, ...]:
    """Every registered source, in registration order."""
    return tuple(_REGISTRY.values())


def source_names() -> tuple[str, ...]:
    """Names a spec may start with: the registered sources in registration order, then :data:`FILE_SOURCE`."""
    return (*_REGISTRY, FILE_SOURCE)


def lookup_source(name: str, spec: str) -> Source:
    """The registered source called ``name``; UserError naming ``spec``, the known sources and close matches."""
    if name not in _REGISTRY:
        names = list(source_names())
        raise UserError(
            f"unknown model source {name!r} in {spec!r}; known sources: {', '.join(names)}"
            f"{close_matches_hint(name, names)}"
        )
    return _REGISTRY[name]
