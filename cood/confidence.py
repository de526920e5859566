"""Confidence functions κ computed from logits; higher always means "more in-distribution".

Every function takes ``logits: (N, C) float`` (float32 or wider) and returns ``(N,) float64``.
Softmax-based scores go through a float64 log-softmax (log-sum-exp), so confident samples never
saturate into ties at 1.0 (cood.md §5, selective.md §1).

New functions plug in by name with :func:`register`; :data:`REGISTRY` maps names to functions and
:func:`compute` evaluates several at once. The model-in-the-loop scores (``odin``, ``mcd_neg_entropy``)
are produced inside inference by ``pipelines`` under the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

ConfidenceFn = Callable[[np.ndarray], np.ndarray]

REGISTRY: dict[str, ConfidenceFn] = {}


def register(name: str) -> Callable[[ConfidenceFn], ConfidenceFn]:
    """Decorator adding a logits -> (N,) confidence function to :data:`REGISTRY` under ``name``."""

    def add(fn: ConfidenceFn) -> ConfidenceFn:
        if name in REGISTRY:
            raise ValueError(f"confidence function {name!r} is already registered")
        REGISTRY[name] = fn
        return fn

    return add


_CHUNK_ROWS = 2048  # rows per block of the softmax passes (16 MB of float64 at 1,000 classes)


def _as_logits(logits: np.ndarray) -> np.ndarray:
    """Validate ``logits: (N, C)`` and return them as float64."""
    z = np.asarray(logits)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, C) with C >= 2, got {z.shape}")
    z = z.astype(np.float64, copy=False)
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or infinite values")
    return z


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``logits: (N, C)`` -> ``(N, C) float64`` log-probabilities, computed with a stable log-sum-exp."""
    z = _as_logits(logits)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``logits: (N, C)`` -> ``(N, C) float64`` probabilities (rows sum to 1): exp(z − max z) normalised by its
    row sum, one exp pass (exp of :func:`log_softmax` would take two).

    Computed in place, a block of rows at a time, in ``out`` (an (N, C) float64 array, returned) or a new
    array: no (N, C) temporaries.
    """
    z = np.asarray(logits)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, C) with C >= 2, got {z.shape}")
    if not (np.issubdtype(z.dtype, np.floating) or np.issubdtype(z.dtype, np.integer)):
        raise ValueError(f"logits must be real numbers, got dtype {z.dtype}")
    if out is None:
        out = np.empty(z.shape, dtype=np.float64)
    elif out.shape != z.shape or out.dtype != np.float64:
        raise ValueError(f"out must be a float64 array of shape {z.shape}, got {out.dtype} {out.shape}")
    for start in range(0, z.shape[0], _CHUNK_ROWS):
        block = out[start : start + _CHUNK_ROWS]
        block[...] = z[start : start + _CHUNK_ROWS]
        if not np.isfinite(block).all():
            raise ValueError("logits contain NaN or infinite values")
        block -= block.max(axis=1, keepdims=True)
        np.exp(block, out=block)
        block /= block.sum(axis=1, keepdims=True)
    return out


# κ that one float64 softmax pass gives together (see _softmax_family); rows per chunk of that pass
SOFTMAX_FAMILY = ("msp", "log_msp", "neg_entropy", "max_logit", "energy")
# κ whose float64 values tie where they saturate -> the registered κ that ranks them without ties (a strictly
# increasing function of them wherever they do not tie); C-OOD ranks by it (cood.md §5)
RANK_KEYS = {"msp": "log_msp"}


def _softmax_family(z: np.ndarray, names: Iterable[str]) -> dict[str, np.ndarray]:
    """``z: (N, C)`` validated float64 logits -> ``{name: (N,) float64}`` for names in SOFTMAX_FAMILY, from one
    exp pass per chunk of rows.

    With d = z − max z and r = Σ_{j ≠ top} exp(d_j) (the top class's exp(0) = 1 left out, so r keeps full
    precision when it is below 1e-16): log MSP = −log1p(r), MSP = exp(log MSP), energy = max z + log1p(r),
    negative entropy = Σ_j p_j d_j − log1p(r), max logit = max z.
    """
    wanted = tuple(dict.fromkeys(names))
    out = {name: np.empty(z.shape[0], dtype=np.float64) for name in wanted}
    needs_exp = any(name != "max_logit" for name in wanted)
    for start in range(0, z.shape[0], _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        block = z[rows]
        top_class = block.argmax(axis=1)
        top = block[np.arange(block.shape[0]), top_class]
        if "max_logit" in out:
            out["max_logit"][rows] = top
        if not needs_exp:
            continue
        shifted = block - top[:, None]
        e = np.exp(shifted)
        weighted = np.einsum("ij,ij->i", e, shifted)  # the top class adds exp(0) · 0 = 0
        e[np.arange(block.shape[0]), top_class] = 0.0
        others = e.sum(axis=1)
        log_norm = np.log1p(others)
        if "log_msp" in out:
            out["log_msp"][rows] = -log_norm
        if "msp" in out:
            out["msp"][rows] = np.exp(-log_norm)
        if "energy" in out:
            out["energy"][rows] = top + log_norm
        if "neg_entropy" in out:
            out["neg_entropy"][rows] = weighted / (1.0 + others) - log_norm
    return out


@register("msp")
def msp(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability, ``(N,) float64`` in (0, 1]; computed as exp(max z − logsumexp z)."""
    return _softmax_family(_as_logits(logits), ["msp"])["msp"]


@register("log_msp")
def log_msp(logits: np.ndarray) -> np.ndarray:
    """log of the maximum softmax probability, ``(N,) float64`` ≤ 0: the tie-free ranking key of MSP (it stays
    below 0 for any finite gap, where exp(log MSP) and a float32 softmax round to 1.0)."""
    return _softmax_family(_as_logits(logits), ["log_msp"])["log_msp"]


@register("neg_entropy")
def neg_entropy(logits: np.ndarray) -> np.ndarray:
    """Negative Shannon entropy of the softmax in nats, ``(N,) float64`` in [−log C, 0]."""
    return _softmax_family(_as_logits(logits), ["neg_entropy"])["neg_entropy"]


@register("max_logit")
def max_logit(logits: np.ndarray) -> np.ndarray:
    """Largest raw logit, ``(N,) float64`` (temperature-invariant ranking)."""
    return _as_logits(logits).max(axis=1)


@register("energy")
def energy(logits: np.ndarray) -> np.ndarray:
    """Negative free energy at T = 1, i.e. logsumexp of the logits, ``(N,) float64``."""
    return _softmax_family(_as_logits(logits), ["energy"])["energy"]


@register("margin")
def margin(logits: np.ndarray) -> np.ndarray:
    """Gap between the two largest logits, ``(N,) float64`` ≥ 0."""
    z = _as_logits(logits)
    top2 = np.partition(z, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def compute(logits: np.ndarray, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Evaluate several registered confidence functions: ``{name: (N,) float64}``, in the order asked.

    The logits are validated and widened once, and the softmax family (MSP, log MSP, negative entropy,
    energy, max logit) shares one exp pass: the same values as calling each function, ≈ 3× faster for those four. Raises
    ValueError naming the unknown function and the registered ones.
    """
    names = list(names)
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown confidence function {unknown[0]!r}; registered: {', '.join(sorted(REGISTRY))}")
    if not names:
        return {}
    z = _as_logits(logits)
    shared = _softmax_family(z, [name for name in names if name in SOFTMAX_FAMILY])
    return {name: shared[name] if name in shared else REGISTRY[name](z) for name in names}
