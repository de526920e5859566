"""The softmax family from logits, float64: the one implementation that ``hsc``, ``cood`` and ``pipelines`` use.

- :func:`softmax_stats`: one pass over ``logits: (N, C)`` giving :class:`SoftmaxStats`, the per-row summaries
  of softmax(β·z) from which every logit-based κ and loss follows: MSP, log MSP, negative entropy, energy
  (log-sum-exp), max logit, NLL and Brier (``cood.confidence``, ``hsc.selective``, the pipeline's bundle).
- :func:`softmax`: the ``(N, C)`` probability matrix itself (hierarchical selective classification).

Both work on row chunks (float32 input is widened chunk by chunk, never as a whole) spread over the shared
thread pool of :mod:`hsc.parallel`: numpy's ufuncs release the GIL, so a pass scales with cores without any
per-sample Python loop.

Convention: with d = β·z − max β·z and r = Σ_{j ≠ top} exp(d_j) (the top class's exp(0) = 1 left out, so r
keeps full precision below 1e-16), log MSP = −log1p(r), so confident rows never round to MSP = 1.0 ties in
their ranking key (selective.md §1, cood.md §5).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hsc.parallel import map_row_chunks

__all__ = [
    "CHUNK_ROWS",
    "SOFTMAX_KAPPAS",
    "ExpKernel",
    "SoftmaxStats",
    "check_logits",
    "numpy_exp",
    "row_dots",
    "scratch_buffer",
    "softmax",
    "softmax_stats",
]

CHUNK_ROWS = 512  # per-chunk call overhead vs cache: 512 was fastest for C = 1,000 (256: +10%, 2048: +30%)
SOFTMAX_KAPPAS = ("msp", "log_msp", "neg_entropy", "max_logit", "energy")
"""The confidence functions κ of one softmax pass: the :class:`SoftmaxStats` properties of these names."""

NOT_FINITE = "logits must be finite, found NaN or infinite values"
_LOCAL = threading.local()


def scratch_buffer(slot: int, rows: int, cols: int) -> np.ndarray:
    """A reusable per-thread float64 scratch array of shape (rows, cols) (avoids page faults per chunk)."""
    buffers = getattr(_LOCAL, "buffers", None)
    if buffers is None:
        buffers = _LOCAL.buffers = {}
    buf = buffers.get(slot)
    if buf is None or buf.size < rows * cols:
        buf = buffers[slot] = np.empty(max(rows, CHUNK_ROWS) * cols, dtype=np.float64)
    return buf[: rows * cols].reshape(rows, cols)


ExpKernel = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``exp(x, out) -> out``: writes exp(x) into ``out``; both float64 arrays of one shape, ``out`` may be ``x``."""


def numpy_exp(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The default :data:`ExpKernel`, numpy's float64 ``exp`` (vectorised only on AVX-512 CPUs; a caller that
    may use torch can pass a faster kernel, as ``pipelines.analyses.selective.torch_exp`` does)."""
    return np.exp(x, out=out)


def row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n,)`` row-wise inner products Σ_j a[i, j]·b[i, j] of two ``(n, C)`` float64 arrays (a batched BLAS
    dot: about twice as fast as ``einsum`` here)."""
    return (a[:, None, :] @ b[:, :, None])[:, 0, 0]


def check_logits(
    logits: np.ndarray, labels: np.ndarray | None = None, *, finite: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate ``logits: (N, C)`` floats (finite unless ``finite=False``), ``labels: (N,)`` ints in [0, C).

    Returns the arrays unchanged (no float64 copy of the whole matrix); raises ValueError naming the argument.
    """
    z = np.asarray(logits)
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, C) with N >= 1 and C >= 2, got shape {z.shape}")
    if not np.issubdtype(z.dtype, np.floating):
        raise ValueError(f"logits must be a float array, got dtype {z.dtype}")
    if finite and not np.isfinite(z).all():
        raise ValueError(NOT_FINITE)
    if labels is None:
        return z, None
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != z.shape[0]:
        raise ValueError(f"labels must have shape ({z.shape[0]},) to match logits, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must lie in [0, {z.shape[1] - 1}], found [{y.min()}, {y.max()}]")
    return z, y.astype(np.int64, copy=False)


@dataclass(frozen=True)
class SoftmaxStats:
    """Per-row summaries of p = softmax(β·z); every field is ``(N,) float64``.

    ``max_scaled`` = max_j β·z_j; ``log_norm`` = log Σ_j exp(β·z_j − max) ≥ 0 (= −log MSP, computed as
    log1p of the non-top classes' mass, so it does not round to 0 for very confident rows);
    ``mean_shifted`` = Σ_j p_j·(β·z_j − max) ≤ 0; ``sum_sq_prob`` = Σ_j p_j²;
    ``label_scaled`` = β·z_y (NaN without labels); ``top_class``: (N,) int64, the first class with the
    largest logit (the prediction).
    """

    max_scaled: np.ndarray
    log_norm: np.ndarray
    mean_shifted: np.ndarray
    sum_sq_prob: np.ndarray
    label_scaled: np.ndarray
    top_class: np.ndarray

    @property
    def logsumexp(self) -> np.ndarray:
        """``(N,)`` log Σ_j exp(β·z_j)."""
        return self.max_scaled + self.log_norm

    @property
    def energy(self) -> np.ndarray:
        """``(N,)`` negative free energy of the scaled logits: log Σ_j exp(β·z_j) (:attr:`logsumexp`)."""
        return self.logsumexp

    @property
    def max_logit(self) -> np.ndarray:
        """``(N,)`` largest scaled logit max_j β·z_j (:attr:`max_scaled`)."""
        return self.max_scaled

    @property
    def msp(self) -> np.ndarray:
        """``(N,)`` maximum softmax probability in (0, 1] (rounds to 1.0 when −log MSP < 1.1e-16)."""
        return np.exp(-self.log_norm)

    @property
    def log_msp(self) -> np.ndarray:
        """``(N,)`` log MSP ≤ 0: the tie-free ranking key of MSP (selective.md §1)."""
        return -self.log_norm

    @property
    def neg_entropy(self) -> np.ndarray:
        """``(N,)`` Σ_j p_j log p_j in nats, in [−log C, 0] (from the shifted logits: no cancellation of max)."""
        return self.mean_shifted - self.log_norm

    @property
    def nll(self) -> np.ndarray:
        """``(N,)`` −log p_y in nats (needs labels)."""
        return self.logsumexp - self.label_scaled

    @property
    def brier(self) -> np.ndarray:
        """``(N,)`` Σ_j (p_j − 1[j = y])², in [0, 2] (needs labels)."""
        return self.sum_sq_prob - 2.0 * np.exp(self.label_scaled - self.logsumexp) + 1.0

    def kappa(self, name: str) -> np.ndarray:
        """``(N,)`` the confidence function ``name`` (one of :data:`SOFTMAX_KAPPAS`) of these rows."""
        if name not in SOFTMAX_KAPPAS:
            raise ValueError(f"kappa must be one of {', '.join(SOFTMAX_KAPPAS)}, got {name!r}")
        return getattr(self, name)


def softmax_stats(
    logits: np.ndarray,
    labels: np.ndarray | None = None,
    beta: float = 1.0,
    rows: np.ndarray | None = None,
    *,
    exp: ExpKernel = numpy_exp,
) -> SoftmaxStats:
    """One float64 pass over ``logits: (N, C)`` (any float dtype): :class:`SoftmaxStats` of softmax(β·z).

    ``labels: (N,)`` int (optional) enables NLL and Brier; ``beta`` = 1/T > 0; ``rows`` (optional int index)
    restricts the pass to those rows without copying the matrix; ``exp``: the float64 exp kernel (most of the
    pass's time).
    """
    z, y = check_logits(logits, labels, finite=False)  # non-finite logits surface as non-finite row stats
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a positive finite number, got {beta}")
    idx = None if rows is None else np.asarray(rows, dtype=np.int64)
    n = z.shape[0] if idx is None else idx.size
    out = np.empty((5, n), dtype=np.float64)
    top_classes = np.empty(n, dtype=np.int64)

    def chunk(a: int, b: int) -> None:
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite logits are reported after the pass
            _stats_chunk(a, b)

    def _stats_chunk(a: int, b: int) -> None:
        c = scratch_buffer(0, b - a, z.shape[1])
        np.multiply(z[a:b] if idx is None else z[idx[a:b]], beta, out=c, dtype=np.float64)
        rows_ = np.arange(b - a)
        top_class = top_classes[a:b] = c.argmax(axis=1)
        top = c[rows_, top_class]
        c -= top[:, None]
        if y is not None:
            out[4, a:b] = c[rows_, y[a:b] if idx is None else y[idx[a:b]]] + top
        e = exp(c, scratch_buffer(1, b - a, z.shape[1]))
        weighted = row_dots(e, c)  # a −inf logit gives 0·(−inf) = NaN here
        # drop the top class's exp(0) = 1 so the other classes' mass keeps full precision when it is < 1e-16
        e[rows_, top_class] = 0.0
        others = e.sum(axis=1)
        s = 1.0 + others
        out[0, a:b] = top
        out[1, a:b] = np.log1p(others)
        out[2, a:b] = weighted / s
        out[3, a:b] = (1.0 + row_dots(e, e)) / (s * s)

    map_row_chunks(chunk, n, CHUNK_ROWS)
    if y is None:
        out[4] = np.nan
    if not np.isfinite(out[:4] if y is None else out).all():
        raise ValueError(NOT_FINITE)
    return SoftmaxStats(*out, top_class=top_classes)


def softmax(logits: np.ndarray, out: np.ndarray | None = None, *, temperature: float | None = None) -> np.ndarray:
    """``logits: (N, C)`` real -> ``(N, C) float64`` probabilities softmax(z / T) (rows sum to 1): exp(z/T −
    max) normalised by its row sum, one exp pass; ``temperature`` None means T = 1 (no division).

    Computed in place, :data:`CHUNK_ROWS` rows at a time on the shared thread pool, in ``out`` (an (N, C)
    float64 array, returned) or a new array: no (N, C) temporaries. Each row's operations (widen, divide by T,
    max shift, exp, row sum, division) are scipy's, so the values equal ``scipy.special.softmax`` bit for bit.
    """
    z = np.asarray(logits)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, C) with C >= 2, got {z.shape}")
    if not (np.issubdtype(z.dtype, np.floating) or np.issubdtype(z.dtype, np.integer)):
        raise ValueError(f"logits must be real numbers, got dtype {z.dtype}")
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    if out is None:
        out = np.empty(z.shape, dtype=np.float64)
    elif out.shape != z.shape or out.dtype != np.float64:
        raise ValueError(f"out must be a float64 array of shape {z.shape}, got {out.dtype} {out.shape}")

    def fill(start: int, stop: int) -> None:
        block = out[start:stop]
        block[...] = z[start:stop]
        if temperature is not None:
            block /= float(temperature)
        if not np.isfinite(block).all():
            raise ValueError("logits contain NaN or infinite values")
        block -= block.max(axis=1, keepdims=True)
        np.exp(block, out=block)
        block /= block.sum(axis=1, keepdims=True)

    map_row_chunks(fill, z.shape[0], CHUNK_ROWS)
    return out
