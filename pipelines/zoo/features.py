"""Penultimate (pre-logit) features and logits from ONE forward pass, and the model's final linear layer.

:func:`feature_extractor` wraps a network built by :func:`pipelines.zoo.build_model`; calling it on a normalised
batch ``x: (B, 3, S, S)`` returns ``(logits (B, 1000) float32, features (B, D) float32)`` from the same pass:

- ``timm``: ``fmap = forward_features(x)``; features = ``forward_head(fmap, pre_logits=True)`` (timm's own
  pre-logit call: pooled, head norm / MLP applied, before the classifier); logits = ``forward_head(fmap)``, the
  same computation as ``model(x)``. The head is ``get_classifier()`` when it is one ``nn.Linear``.
- ``torchvision``, ``efficientnet_lite`` (and any other source): the input of the last ``nn.Linear`` with 1,000
  outputs (``fc``, ``classifier[-1]``, ``heads.head``, ``_fc``), captured by a forward pre-hook while ``model(x)``
  runs unchanged; that Linear is the head.
- ``open_clip``: the image embedding ``clip.encode_image(x)`` (unnormalised); logits = 100 · cos from it
  (:meth:`~pipelines.zoo.clip_zeroshot.ClipZeroShot.logits_from_embedding`). No head: the logits are not
  affine in the embedding, so ViM, Residual, ReAct and ASH-S do not apply.

The head comes as a numpy :class:`cood.detectors.LinearHead` (float64 ``W: (1000, D)``, ``b: (1000,)``).
:func:`head_mismatch` measures how far ``features @ W.T + b`` is from the logits (check it on a first batch).

Storage: :func:`features_to_fp16` casts features for storage (half the bytes of float32; relative rounding
≤ 2⁻¹¹ ≈ 4.9e-4, magnitudes up to 65,504, refused beyond). The detectors widen fp16 back to float64 (float32
for KNN's similarities) block by block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cood.detectors import LinearHead
from pipelines.errors import UserError
from pipelines.zoo.registry import IMAGENET_NUM_CLASSES

FP16_MAX = float(np.finfo(np.float16).max)  # 65,504


@dataclass(frozen=True, eq=False)
class FeatureExtractor:
    """A built model that returns ``(logits, features)`` from one forward pass.

    model: the network (eval mode); method: how the features are read (``timm_pre_logits``,
    ``classifier_input:<module path>``, ``open_clip_image_embedding``); head: the final linear layer as numpy,
    or None with ``head_reason`` saying why.
    """

    model: nn.Module
    method: str
    head: LinearHead | None
    head_reason: str | None
    _forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (B, 3, S, S)`` normalised -> ``(logits (B, C) float32, features (B, D) float32)``, on x's device."""
        logits, features = self._forward(x)
        if features.ndim != 2 or features.shape[0] != logits.shape[0]:
            raise RuntimeError(f"{self.method}: expected (B, D) features, got shape {tuple(features.shape)}")
        return logits.float(), features.float()


def _linear_head(module: nn.Module) -> LinearHead:
    weight = module.weight.detach().cpu().double().numpy()
    bias = module.bias.detach().cpu().double().numpy() if module.bias is not None else np.zeros(weight.shape[0])
    return LinearHead(weight, bias)


def _timm(model: nn.Module) -> FeatureExtractor:
    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = model.forward_features(x)
        return model.forward_head(fmap), model.forward_head(fmap, pre_logits=True)

    classifier = model.get_classifier()
    if isinstance(classifier, nn.Linear):
        head, reason = _linear_head(classifier), None
    else:
        head, reason = None, f"timm's classifier is {type(classifier).__name__}, not one nn.Linear"
    return FeatureExtractor(model, "timm_pre_logits", head, reason, forward)


def _final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1][1].out_features != IMAGENET_NUM_CLASSES:
        raise UserError(
            f"{type(model).__name__} has no final nn.Linear with {IMAGENET_NUM_CLASSES} outputs, so its "
            "classifier input cannot be read as features"
        )
    return linears[-1]


def _classifier_input(model: nn.Module) -> FeatureExtractor:
    name, linear = _final_linear(model)

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured: list[torch.Tensor] = []
        handle = linear.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
        try:
            logits = model(x)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(f"the classifier {name!r} ran {len(captured)} times in one forward pass, expected once")
        return logits, captured[0]

    return FeatureExtractor(model, f"classifier_input:{name}", _linear_head(linear), None, forward)


def _open_clip(model: nn.Module) -> FeatureExtractor:
    from pipelines.zoo.clip_zeroshot import ClipZeroShot

    if not isinstance(model, ClipZeroShot):
        raise TypeError(f"an open_clip model must be a ClipZeroShot, got {type(model).__name__}")

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = model.clip.encode_image(x)
        return model.logits_from_embedding(embedding), embedding

    reason = "zero-shot logits are 100·cos(embedding, class vector), not affine in the embedding"
    return FeatureExtractor(model, "open_clip_image_embedding", None, reason, forward)


def feature_extractor(model: nn.Module, source: str) -> FeatureExtractor:
    """The :class:`FeatureExtractor` of a model built from a spec of ``source`` (``ModelSpec.source``)."""
    if source == "timm":
        return _timm(model)
    if source == "open_clip":
        return _open_clip(model)
    return _classifier_input(model)


def head_mismatch(head: LinearHead, logits: np.ndarray, features: np.ndarray) -> float:
    """max |features @ W.T + b − logits| / max(1, max |logits|) over a batch: ≈ 1e-6 when the head is the
    layer that maps these features to these logits (float32 inference), large otherwise."""
    logits = np.asarray(logits, dtype=np.float64)
    recomputed = head.logits(features)
    return float(np.abs(recomputed - logits).max() / max(1.0, float(np.abs(logits).max())))


def features_to_fp16(features: np.ndarray) -> np.ndarray:
    """``(n, D)`` real features -> float16 for storage. ValueError when a value is not finite or exceeds 65,504
    in magnitude (it would become ±inf)."""
    x = np.asarray(features)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    if x.size and float(np.abs(x).max()) > FP16_MAX:
        raise ValueError(f"features reach {float(np.abs(x).max()):.4g}, beyond float16's {FP16_MAX:g}; store float32")
    return x.astype(np.float16)
