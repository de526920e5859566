"""Softmax of (temperature-scaled) logits in float64, and the temperature-scaling fit (selective.md §3).

:func:`softmax_stats` is the one pass over an ``(N, C)`` logit matrix that every logit-based quantity of
the selective metrics needs (MSP, negative entropy, max logit, NLL, Brier). It works on row chunks
(float32 input is widened chunk by chunk, never as a whole) and spreads the chunks over threads: numpy's
ufuncs release the GIL, so this scales with cores without any per-sample Python loop.

:func:`fit_temperature` fits T by bounded 1-D minimisation of the mean NLL over log T on T ∈ [0.05, 20]
(the NLL is convex in β = 1/T, hence unimodal in log T) and never returns a T whose NLL is worse than
T = 1. ``reference=True`` replays the paper's recipe instead: LBFGS on raw T from 1.5, lr 0.01,
max_iter 5000, one ``step`` without line search.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hsc.parallel import map_row_chunks

T_BOUNDS = (0.05, 20.0)
_CHUNK_ROWS = 512  # per-chunk call overhead vs cache: 512 was fastest for C = 1,000 (256: +10%, 2048: +30%)
_LOCAL = threading.local()


def _buffer(slot: int, rows: int, cols: int) -> np.ndarray:
    """A reusable per-thread float64 scratch array of shape (rows, cols) (avoids page faults per chunk)."""
    buffers = getattr(_LOCAL, "buffers", None)
    if buffers is None:
        buffers = _LOCAL.buffers = {}
    buf = buffers.get(slot)
    if buf is None or buf.size < rows * cols:
        buf = buffers[slot] = np.empty(max(rows, _CHUNK_ROWS) * cols, dtype=np.float64)
    return buf[: rows * cols].reshape(rows, cols)


ExpKernel = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``exp(x, out) -> out``: writes exp(x) into ``out``; both float64 arrays of one shape, ``out`` may be ``x``."""


def numpy_exp(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The default :data:`ExpKernel`, numpy's float64 ``exp`` (vectorised only on AVX-512 CPUs; a caller that
    may use torch can pass a faster kernel, as ``pipelines.analyses.selective.torch_exp`` does)."""
    return np.exp(x, out=out)


def _row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n,)`` row-wise inner products Σ_j a[i, j]·b[i, j] of two ``(n, C)`` float64 arrays (a batched BLAS
    dot: about twice as fast as ``einsum`` here)."""
    return (a[:, None, :] @ b[:, :, None])[:, 0, 0]


def _map_chunks(fn, n_rows: int) -> list:
    """Apply ``fn(start, stop)`` to row chunks of _CHUNK_ROWS rows in order, on the shared thread pool."""
    return map_row_chunks(fn, n_rows, _CHUNK_ROWS)


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
        raise ValueError(_NOT_FINITE)
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


_NOT_FINITE = "logits must be finite, found NaN or infinite values"


@dataclass(frozen=True)
class SoftmaxStats:
    """Per-row summaries of p = softmax(β·z); every field is ``(N,) float64``.

    ``max_scaled`` = max_j β·z_j; ``log_norm`` = log Σ_j exp(β·z_j − max) ≥ 0 (= −log MSP, computed as
    log1p of the non-top classes' mass, so it does not round to 0 for very confident rows);
    ``mean_scaled`` = Σ_j p_j·β·z_j; ``sum_sq_prob`` = Σ_j p_j²;
    ``label_scaled`` = β·z_y (NaN without labels); ``top_class``: (N,) int64, the first class with the
    largest logit (the prediction).
    """

    max_scaled: np.ndarray
    log_norm: np.ndarray
    mean_scaled: np.ndarray
    sum_sq_prob: np.ndarray
    label_scaled: np.ndarray
    top_class: np.ndarray

    @property
    def logsumexp(self) -> np.ndarray:
        """``(N,)`` log Σ_j exp(β·z_j)."""
        return self.max_scaled + self.log_norm

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
        """``(N,)`` Σ_j p_j log p_j in nats, in [−log C, 0]."""
        return self.mean_scaled - self.logsumexp

    @property
    def nll(self) -> np.ndarray:
        """``(N,)`` −log p_y in nats (needs labels)."""
        return self.logsumexp - self.label_scaled

    @property
    def brier(self) -> np.ndarray:
        """``(N,)`` Σ_j (p_j − 1[j = y])², in [0, 2] (needs labels)."""
        return self.sum_sq_prob - 2.0 * np.exp(self.label_scaled - self.logsumexp) + 1.0


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
        c = _buffer(0, b - a, z.shape[1])
        np.multiply(z[a:b] if idx is None else z[idx[a:b]], beta, out=c, dtype=np.float64)
        rows_ = np.arange(b - a)
        top_class = top_classes[a:b] = c.argmax(axis=1)
        top = c[rows_, top_class]
        c -= top[:, None]
        if y is not None:
            out[4, a:b] = c[rows_, y[a:b] if idx is None else y[idx[a:b]]] + top
        e = exp(c, _buffer(1, b - a, z.shape[1]))
        weighted = _row_dots(e, c)  # a −inf logit gives 0·(−inf) = NaN here
        # drop the top class's exp(0) = 1 so the other classes' mass keeps full precision when it is < 1e-16
        e[rows_, top_class] = 0.0
        others = e.sum(axis=1)
        s = 1.0 + others
        out[0, a:b] = top
        out[1, a:b] = np.log1p(others)
        out[2, a:b] = top + weighted / s
        out[3, a:b] = (1.0 + _row_dots(e, e)) / (s * s)

    _map_chunks(chunk, n)
    if y is None:
        out[4] = np.nan
    if not np.isfinite(out[:4] if y is None else out).all():
        raise ValueError(_NOT_FINITE)
    return SoftmaxStats(*out, top_class=top_classes)


class _ShiftedLogits:
    """Calibration logits shifted by their row max, d = z − max z (float64), for repeated NLL(β) calls."""

    def __init__(self, logits: np.ndarray, labels: np.ndarray, exp: ExpKernel = numpy_exp) -> None:
        z, y = check_logits(logits, labels, finite=False)
        self.exp = exp
        d = np.empty(z.shape, dtype=np.float64)

        def chunk(a: int, b: int) -> bool:
            block = d[a:b]
            np.copyto(block, z[a:b])
            finite = bool(np.isfinite(block).all())
            if finite:
                block -= block.max(axis=1, keepdims=True)
            return finite

        if not all(_map_chunks(chunk, z.shape[0])):
            raise ValueError(_NOT_FINITE)
        self.d = d
        self.d_label = d[np.arange(d.shape[0]), y]

    def _exp_scaled(self, beta: float, a: int, b: int) -> np.ndarray:
        """exp(β·d) of rows [a, b), in this thread's scratch buffer."""
        e = np.multiply(self.d[a:b], beta, out=_buffer(0, b - a, self.d.shape[1]))
        return self.exp(e, e)

    def mean_nll(self, beta: float) -> float:
        """Mean over rows of −log softmax(β·z)_y, float64."""
        d = self.d

        def chunk(a: int, b: int) -> float:
            e = self._exp_scaled(beta, a, b)
            return float(np.log(e.sum(axis=1)).sum())

        total = math.fsum(_map_chunks(chunk, d.shape[0]))
        return total / d.shape[0] - beta * float(self.d_label.mean())

    def nll_derivatives(self, beta: float) -> tuple[float, float, float]:
        """Mean NLL of softmax(β·z) and its first and second derivatives in β, from one float64 pass."""
        d = self.d

        def chunk(a: int, b: int) -> tuple[float, float, float]:
            e = self._exp_scaled(beta, a, b)
            s = e.sum(axis=1)
            mean_d = _row_dots(e, d[a:b]) / s
            e *= d[a:b]  # e·d
            mean_d2 = _row_dots(e, d[a:b]) / s
            return float(np.log(s).sum()), float(mean_d.sum()), float((mean_d2 - mean_d * mean_d).sum())

        parts = _map_chunks(chunk, d.shape[0])
        n = d.shape[0]
        dl = float(self.d_label.mean())
        log_norm, mean_d, variance = (math.fsum(p[k] for p in parts) / n for k in range(3))
        return log_norm - beta * dl, mean_d - dl, variance

    def mean_nll_and_grad_t(self, t: float) -> tuple[float, float]:
        """Mean NLL at temperature t and its derivative d NLL / d t."""
        d = self.d
        beta = 1.0 / t

        def chunk(a: int, b: int) -> tuple[float, float]:
            e = self._exp_scaled(beta, a, b)
            s = e.sum(axis=1)
            return float(np.log(s).sum()), float((_row_dots(e, d[a:b]) / s).sum())

        parts = _map_chunks(chunk, d.shape[0])
        n = d.shape[0]
        log_norm = math.fsum(p[0] for p in parts) / n
        mean_d = math.fsum(p[1] for p in parts) / n
        dl = float(self.d_label.mean())
        return log_norm - beta * dl, -(mean_d - dl) / (t * t)


@dataclass(frozen=True)
class TemperatureFit:
    """A temperature fit: ``temperature`` T (> 0), mean NLL (nats) at T = 1 and at T, and bookkeeping."""

    temperature: float
    nll_before: float
    nll_after: float
    method: str  # "newton" | "lbfgs_reference" | "fallback_t1" (the fit would have raised the NLL)
    evaluations: int


def _fit_newton(
    obj: _ShiftedLogits, tol: float = 1e-9, max_steps: int = 100
) -> tuple[float, float, float, int]:
    """(T, mean NLL at T, mean NLL at T = 1, passes) of a safeguarded Newton search on β = 1/T ∈
    [1/T_max, 1/T_min], started at β = 1 (so its first pass also gives the NLL before scaling).

    The mean NLL is convex in β, with f'(β) = mean(E_p[d] − d_y) and f''(β) = mean(Var_p[d]) from one
    pass each (:meth:`_ShiftedLogits.nll_derivatives`). The bracket [lo, hi] keeps the sign change of f';
    a Newton step leaving it (or f'' = 0) is replaced by bisection, so the search also ends at a bound when
    the optimum lies beyond it. Stops when the step is below ``tol``·β (typically 5–7 passes).
    """
    lo, hi = 1.0 / T_BOUNDS[1], 1.0 / T_BOUNDS[0]
    beta = 1.0
    nll_at_1 = math.nan
    for step in range(1, max_steps + 1):
        nll, grad, curvature = obj.nll_derivatives(beta)
        if step == 1:
            nll_at_1 = nll
        if grad > 0:
            hi = beta
        else:
            lo = beta
        proposal = beta - grad / curvature if curvature > 0 else 0.5 * (lo + hi)
        if abs(proposal - beta) <= tol * beta or hi - lo <= tol * beta:
            return 1.0 / beta, nll, nll_at_1, step
        beta = proposal if lo < proposal < hi else 0.5 * (lo + hi)
    return 1.0 / beta, obj.mean_nll(beta), nll_at_1, max_steps + 1


def _fit_lbfgs_reference(obj: _ShiftedLogits) -> tuple[float, int]:
    """Replay torch ``LBFGS([T], lr=0.01, max_iter=5000)`` from T = 1.5: one step, no line search (1-D)."""
    lr, max_iter, max_eval = 0.01, 5000, 5000 * 5 // 4
    tol_grad, tol_change, history = 1e-7, 1e-9, 100
    t = 1.5
    loss, g = obj.mean_nll_and_grad_t(t)
    evals = 1
    if abs(g) <= tol_grad:
        return t, evals
    dirs: list[float] = []
    steps: list[float] = []
    ro: list[float] = []
    h_diag = 1.0
    d = step = 0.0
    prev_g = g
    for n_iter in range(1, max_iter + 1):
        if n_iter == 1:
            d = -g
        else:
            y, s = g - prev_g, d * step
            ys = y * s
            if ys > 1e-10:
                if len(dirs) == history:
                    del dirs[0], steps[0], ro[0]
                dirs.append(y)
                steps.append(s)
                ro.append(1.0 / ys)
                h_diag = ys / (y * y)
            q = -g
            al = [0.0] * len(dirs)
            for i in range(len(dirs) - 1, -1, -1):
                al[i] = steps[i] * q * ro[i]
                q -= al[i] * dirs[i]
            r = q * h_diag
            for i in range(len(dirs)):
                r += steps[i] * (al[i] - dirs[i] * r * ro[i])
            d = r
        prev_g, prev_loss = g, loss
        step = min(1.0, 1.0 / abs(g)) * lr if n_iter == 1 else lr
        if g * d > -tol_change:
            break
        t += step * d
        if n_iter == max_iter:
            break
        loss, g = obj.mean_nll_and_grad_t(t)
        evals += 1
        if evals >= max_eval or abs(g) <= tol_grad or abs(d * step) <= tol_change:
            break
        if abs(loss - prev_loss) < tol_change:
            break
    return t, evals


def fit_temperature_result(
    logits: np.ndarray, labels: np.ndarray, reference: bool = False, *, exp: ExpKernel = numpy_exp
) -> TemperatureFit:
    """Fit T on ``logits: (N, C)`` float and ``labels: (N,)`` int; return a :class:`TemperatureFit`.

    Default: safeguarded Newton on β = 1/T, T ∈ [0.05, 20], of the float64 mean NLL; if the optimum's NLL
    exceeds the NLL at T = 1, T = 1 is returned (``method="fallback_t1"``). ``reference=True``: the paper's
    LBFGS recipe, returned as found (it may leave the bounds or stall; selective.md §3). ``exp``: the float64
    exp kernel of the NLL passes.
    """
    obj = _ShiftedLogits(logits, labels, exp)
    if reference:
        t, evals = _fit_lbfgs_reference(obj)
        return TemperatureFit(t, obj.mean_nll(1.0), obj.mean_nll(1.0 / t), "lbfgs_reference", evals + 2)
    t, nll_after, nll_before, evals = _fit_newton(obj)
    if not nll_after <= nll_before:
        return TemperatureFit(1.0, nll_before, nll_before, "fallback_t1", evals)
    return TemperatureFit(t, nll_before, nll_after, "newton", evals)


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, reference: bool = False, *, exp: ExpKernel = numpy_exp
) -> float:
    """Temperature T > 0 minimising the mean NLL of softmax(z / T) on ``logits: (N, C)``, ``labels: (N,)``.

    See :func:`fit_temperature_result` for the NLL before/after, the method used and ``exp``.
    """
    return fit_temperature_result(logits, labels, reference=reference, exp=exp).temperature
