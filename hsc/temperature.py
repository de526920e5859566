"""The temperature-scaling fit (selective.md §3) over the float64 softmax of :mod:`hsc.softmax`.

:func:`fit_temperature` fits T by a safeguarded Newton search on β = 1/T ∈ [1/20, 1/0.05] of the mean NLL
(convex in β) and never returns a T whose NLL is worse than T = 1. ``reference=True`` replays the paper's
recipe instead: LBFGS on raw T from 1.5, lr 0.01, max_iter 5000, one ``step`` without line search. The NLL
passes reuse the logits shifted by their row max once (:class:`_ShiftedLogits`), in row chunks on the shared
thread pool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hsc.parallel import map_row_chunks
from hsc.softmax import (
    CHUNK_ROWS,
    NOT_FINITE,
    ExpKernel,
    check_logits,
    numpy_exp,
    row_dots,
    scratch_buffer,
)

T_BOUNDS = (0.05, 20.0)


def _map_chunks(fn, n_rows: int) -> list:
    """Apply ``fn(start, stop)`` to row chunks of CHUNK_ROWS rows in order, on the shared thread pool."""
    return map_row_chunks(fn, n_rows, CHUNK_ROWS)


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
            raise ValueError(NOT_FINITE)
        self.d = d
        self.d_label = d[np.arange(d.shape[0]), y]

    def _exp_scaled(self, beta: float, a: int, b: int) -> np.ndarray:
        """exp(β·d) of rows [a, b), in this thread's scratch buffer."""
        e = np.multiply(self.d[a:b], beta, out=scratch_buffer(0, b - a, self.d.shape[1]))
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
            mean_d = row_dots(e, d[a:b]) / s
            e *= d[a:b]  # e·d
            mean_d2 = row_dots(e, d[a:b]) / s
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
            return float(np.log(s).sum()), float((row_dots(e, d[a:b]) / s).sum())

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
