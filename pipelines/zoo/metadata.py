"""A resolved model's ``models`` metadata columns: training regime, GMACs, and the bare timm names of the papers.

The regime comes from :func:`results.model_metadata.classify` (pure name rules, shared with the published tables)
over the spec's source, name, pretrained tag and pretrained config, then the user's override file. GMACs are
counted without weights: the bare architecture is built on PyTorch's ``meta`` device and one ``(1, 3, S, S)`` meta
input (S = the model's input size) runs through it under :class:`torch.utils.flop_counter.FlopCounterMode`, which
counts the FLOPs of matrix products and convolutions (GMACs = FLOPs / 2 / 1e9; element-wise operations,
normalisation and activations are not counted). For open_clip models only the image tower counts (the class
vectors are computed once, from text). A model whose architecture cannot be built or run on the meta device gets
NULL GMACs and the reason; counting never fails a run.
"""

from __future__ import annotations

import functools
from typing import Any

from pipelines.zoo.registry import ModelSpec, lookup_source
from results.model_metadata import ModelMetadata, Overrides, classify


def regime(ms: ModelSpec, overrides: Overrides | None = None) -> ModelMetadata:
    """The training regime of ``ms`` (rules, then ``overrides`` keyed by model id, spec, ``name.tag`` or name)."""
    metadata = classify(
        ms.name, source=ms.source, tag=ms.pretrained_tag, cfg=ms.pretrained_cfg, pretrained=ms.pretrained
    )
    if overrides is None:
        return metadata
    full = f"{ms.name}.{ms.pretrained_tag}" if ms.pretrained_tag else None
    return overrides.apply(metadata, ms.model_id, ms.spec, full, ms.name)


@functools.cache
def _count_macs(source: str, name: str, input_size: int) -> tuple[float | None, str | None]:
    return _count(source, f"{source}:{name}", name, input_size)


def _count(source: str, spec: str, name: str, input_size: int) -> tuple[float | None, str | None]:
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        ms = _bare_spec(source, spec, name, input_size)
        with torch.device("meta"):
            model = lookup_source(source, spec).architecture(ms)
            model.eval()
            forward = getattr(model, "encode_image", model)
            image = torch.empty(1, 3, input_size, input_size)
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                forward(image)
        flops = counter.get_total_flops()
    except Exception as exc:  # any failure of building or running on meta: NULL with the reason
        message = " ".join(str(exc).split())[:160]
        return None, f"not countable on the meta device: {type(exc).__name__}: {message}"
    if flops <= 0:
        return None, "FlopCounterMode counted no matrix product or convolution"
    return flops / 2 / 1e9, None


def _bare_spec(source: str, spec: str, name: str, input_size: int) -> ModelSpec:
    from pipelines.zoo.registry import Preprocess

    preprocess = Preprocess(input_size, 1.0, "center", "bilinear", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return ModelSpec(spec=spec, source=source, name=name, pretrained_tag=None, pretrained=False, preprocess=preprocess)


def count_gmacs(ms: ModelSpec) -> tuple[float | None, str | None]:
    """``(GMACs, None)`` of one image at ``ms.preprocess.input_size`` through ``ms``'s architecture, or
    ``(None, reason)``; counted once per (source, architecture, input size) in this process (module doc)."""
    return _count_macs(ms.source, ms.name, ms.preprocess.input_size)


def metadata_columns(ms: ModelSpec, overrides: Overrides | None = None) -> dict[str, Any]:
    """The ``models`` columns :meth:`ModelSpec.row` leaves out that need no built model: the regime columns,
    ``gmacs`` and ``gmacs_reason``."""
    gmacs, reason = count_gmacs(ms)
    return {**regime(ms, overrides).row(), "gmacs": gmacs, "gmacs_reason": reason}
