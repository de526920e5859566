"""Resolved specs -> networks: the built model, its parameter count without weights, its weights' fingerprint.

Every network comes from its source's :class:`~pipelines.zoo.registry.Source` (found with
:func:`~pipelines.zoo.registry.lookup_source`); torch is imported inside the functions.
"""

from __future__ import annotations

import hashlib

from pipelines.zoo.registry import ModelSpec, lookup_source, registered_sources


def build_model(ms: ModelSpec, drop_rate: float | None = None):
    """Instantiate the network in eval mode on the CPU: ``(B, 3, S, S) normalised -> (B, 1000) logits``.

    drop_rate: the classifier-head dropout probability to build with, for sources with a
    ``build_with_dropout`` (timm; weights are unchanged; timm's default is mostly 0, which leaves MC dropout
    nothing to sample). None = the source's default.
    """
    source = lookup_source(ms.source, ms.spec)
    if drop_rate is None:
        model = source.build(ms)
    elif source.build_with_dropout is None:
        with_dropout = ", ".join(s.name for s in registered_sources() if s.build_with_dropout is not None)
        raise ValueError(
            f"drop_rate is only supported for {with_dropout} models, got a {ms.source} model ({ms.model_id})"
        )
    elif not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
    else:
        model = source.build_with_dropout(ms, drop_rate)
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
        model = lookup_source(ms.source, ms.spec).architecture(ms)
    return int(sum(p.numel() for p in model.parameters()))


def weights_fingerprint(model) -> str:
    """SHA-256 over the model's state dict (names, shapes, bytes): pins the exact weights of a result."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
