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

# The name the reference C-OOD results use for each of our κ names (cood.md §5).
REFERENCE_NAMES: dict[str, str] = {
    "msp": "softmax",
    "neg_entropy": "entropy",
    "max_logit": "max_logit",
    "odin": "odin_temperature-2_noise_mag-1e-05",
    "mcd_neg_entropy": "mcd_entropy",
}


def register(name: str) -> Callable[[ConfidenceFn], ConfidenceFn]:
    """Decorator adding a logits -> (N,) confidence function to :data:`REGISTRY` under ``name``."""

    def add(fn: ConfidenceFn) -> ConfidenceFn:
        if name in REGISTRY:
            raise ValueError(f"confidence function {name!r} is already registered")
        REGISTRY[name] = fn
        return fn

    return add


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


def softmax(logits: np.ndarray) -> np.ndarray:
    """``logits: (N, C)`` -> ``(N, C) float64`` probabilities (rows sum to 1)."""
    return np.exp(log_softmax(logits))


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """``logits: (N, C)`` -> ``(N,) float64`` log-sum-exp of each row."""
    z = _as_logits(logits)
    top = z.max(axis=1)
    return top + np.log(np.exp(z - top[:, None]).sum(axis=1))


@register("msp")
def msp(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability, ``(N,) float64`` in (0, 1]; computed as exp(max z − logsumexp z)."""
    return np.exp(log_msp(logits))


def log_msp(logits: np.ndarray) -> np.ndarray:
    """log of the maximum softmax probability, ``(N,) float64`` ≤ 0: the tie-free ranking key of MSP."""
    z = _as_logits(logits)
    return z.max(axis=1) - logsumexp(z)


@register("neg_entropy")
def neg_entropy(logits: np.ndarray) -> np.ndarray:
    """Negative Shannon entropy of the softmax in nats, ``(N,) float64`` in [−log C, 0]."""
    logp = log_softmax(logits)
    return (np.exp(logp) * logp).sum(axis=1)


@register("max_logit")
def max_logit(logits: np.ndarray) -> np.ndarray:
    """Largest raw logit, ``(N,) float64`` (temperature-invariant ranking)."""
    return _as_logits(logits).max(axis=1)


@register("energy")
def energy(logits: np.ndarray) -> np.ndarray:
    """Negative free energy at T = 1, i.e. logsumexp of the logits, ``(N,) float64``."""
    return logsumexp(logits)


@register("margin")
def margin(logits: np.ndarray) -> np.ndarray:
    """Gap between the two largest logits, ``(N,) float64`` ≥ 0."""
    z = _as_logits(logits)
    top2 = np.partition(z, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def compute(logits: np.ndarray, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Evaluate several registered confidence functions: ``{name: (N,) float64}``.

    Raises ValueError naming the unknown function and the registered ones.
    """
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name not in REGISTRY:
            raise ValueError(f"unknown confidence function {name!r}; registered: {', '.join(sorted(REGISTRY))}")
        out[name] = REGISTRY[name](logits)
    return out
