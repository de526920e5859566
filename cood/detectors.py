"""Post-hoc OOD detectors over penultimate features and logits, each a confidence function κ (numpy/scipy only).

Every detector is a pure pair ``fit(...) -> stats`` (a frozen dataclass of fitted statistics, fitted once per
model on an in-distribution *fit set*) and ``score(stats, ...) -> (n,) float64``, oriented like
:mod:`cood.confidence`: **higher = more in-distribution**. Formulas, paper defaults and citations are in
docs/detectors.md; the shapes used throughout:

- ``features: (n, D)`` real: the penultimate (pre-logit) features of n images (any float dtype; fp16 storage is
  widened block by block);
- ``logits: (n, C)`` real; ``labels: (n,)`` int class indices of the fit set (Mahalanobis, Relative
  Mahalanobis);
- ``head``: :class:`LinearHead`, the model's final linear layer, ``logits = features @ W.T + b`` (ViM, Residual,
  ReAct, ASH-S).

Scoring runs over blocks of query rows, so memory stays bounded whatever n is (KNN: a query block × fit bank
similarity matrix of at most ``block_bytes``). Each stats object carries its :class:`Provenance` (detector, fit-set
manifest hash, n_fit, feature dim, hyper-parameters) and round-trips through plain arrays
(:func:`stats_to_arrays` / :func:`stats_from_arrays`, :func:`save_stats` / :func:`load_stats` as ``.npz``).

:data:`DETECTORS` maps a name to its :class:`Detector` (what it needs, its uniform ``fit``/``score``, citation):
the engine calls ``DETECTORS[name].fit(fit_inputs, head, fit_set_sha256=...)`` and
``DETECTORS[name].score(stats, inputs)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common import atomic_output
from cood.confidence import energy
from hsc.softmax import softmax

IMAGENET_TRAIN_SIZE = 1_281_167
"""Images in the ImageNet-1k train set: KNN's k = 1000 refers to a fit set of this size (Sun et al. 2022)."""

KNN_K_FULL = 1000
BLOCK_ROWS = 4096
"""Query rows per scoring block for the detectors whose per-block temporaries are (rows × D) or (rows × C)."""
KNN_BLOCK_BYTES = 256 * 2**20
"""Memory of one KNN similarity block (query rows × fit bank, float32): bounds KNN's scoring memory."""
FIT_BLOCK_ROWS = 16384
"""Fit-set rows widened to float64 at a time when accumulating means and covariances."""

NEEDS = ("features", "logits", "head", "labels")
"""What a detector can need: query/fit ``features``, ``logits``, the model's linear ``head``, fit-set ``labels``."""


# --------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class LinearHead:
    """The model's final linear layer: ``logits = features @ weight.T + bias``.

    weight: (C, D) float64; bias: (C,) float64.
    """

    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        w = np.asarray(self.weight, dtype=np.float64)
        b = np.asarray(self.bias, dtype=np.float64)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ValueError(f"head weight must be (C, D) and bias (C,), got {w.shape} and {b.shape}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError("head weight or bias contains NaN or infinite values")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    @property
    def feature_dim(self) -> int:
        """D, the width of the features the head reads."""
        return int(self.weight.shape[1])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``features: (n, D)`` -> ``(n, C) float64`` logits."""
        return np.asarray(features, dtype=np.float64) @ self.weight.T + self.bias


@dataclass(frozen=True)
class DetectorInputs:
    """Per-sample arrays of one image set (the fit set or a query set); a detector reads the ones it needs.

    features: (n, D) real or None; logits: (n, C) real or None; labels: (n,) int class indices or None (fit
    set only: Mahalanobis and Relative Mahalanobis fit class means).
    """

    features: np.ndarray | None = None
    logits: np.ndarray | None = None
    labels: np.ndarray | None = None


@dataclass(frozen=True)
class Provenance:
    """Where fitted statistics come from.

    detector: registry name; fit_set_sha256: the fit set's manifest hash (given by the caller; "" when the
    detector reads no fit data); n_fit: fit-set images used (0 when none); feature_dim: D (0 for logit-only
    detectors); params: the hyper-parameters (JSON-serialisable), the ``kappa_params`` of the κ column.
    """

    detector: str
    fit_set_sha256: str
    n_fit: int
    feature_dim: int
    params: dict[str, Any] = field(default_factory=dict)


def _matrix(values: Any, name: str) -> np.ndarray:
    """Validate a 2-D finite real array ``(n, D)`` with n >= 1 (dtype kept; widened later block by block)."""
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, D) with D >= 1, got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return arr


def _fit_matrix(values: Any, name: str) -> np.ndarray:
    arr = _matrix(values, name)
    if arr.shape[0] < 1:
        raise ValueError(f"{name} of the fit set must hold at least one row")
    return arr


def _require(inputs: DetectorInputs, what: str, detector: str) -> np.ndarray:
    value = getattr(inputs, what)
    if value is None:
        raise ValueError(f"detector {detector!r} needs {what}, which were not given")
    return value


def _check_width(features: np.ndarray, dim: int, detector: str) -> None:
    if features.shape[1] != dim:
        raise ValueError(f"{detector}: features have {features.shape[1]} dims, the fitted statistics {dim}")


def _check_head(head: LinearHead | None, dim: int, detector: str) -> LinearHead:
    if head is None:
        raise ValueError(f"detector {detector!r} needs the model's linear head (W, b)")
    if head.feature_dim != dim:
        raise ValueError(f"{detector}: the head reads {head.feature_dim}-dim features, the fit features have {dim}")
    return head


def _blocks(n: int, rows: int) -> range:
    return range(0, n, max(1, int(rows)))


# --------------------------------------------------------------------------------- Gaussian helpers (float64)


def _whitener(covariance: np.ndarray) -> np.ndarray:
    """``(D, D)`` symmetric PSD covariance Σ -> ``(D, r) float64`` L with L Lᵀ = pinv(Σ) (scipy ``pinvh``'s cutoff:
    eigenvalues ≤ D·eps·λ_max dropped), so ‖(x − μ) L‖² is the squared Mahalanobis distance."""
    eigvals, eigvecs = np.linalg.eigh(covariance)
    cutoff = covariance.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(eigvals).max()), 0.0)
    keep = eigvals > cutoff
    if not keep.any():
        raise ValueError("the fit features have zero covariance (all fit rows equal within their class)")
    return eigvecs[:, keep] / np.sqrt(eigvals[keep])


def _class_gaussians(features: np.ndarray, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class means and the shared (tied) covariance: ``(classes (K,) int64, means (K, D), covariance (D, D))``.

    covariance = (1/N) Σ_i (x_i − μ_{y_i})(x_i − μ_{y_i})ᵀ (maximum likelihood, as Lee et al.'s code via sklearn's
    EmpiricalCovariance). Only classes present in ``labels`` get a mean.
    """
    y = np.asarray(labels)
    if y.shape != (features.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be (n,) integers matching the {features.shape[0]} fit rows, got {y.shape}")
    classes, index = np.unique(y, return_inverse=True)
    counts = np.bincount(index, minlength=classes.size).astype(np.float64)
    d = features.shape[1]
    sums = np.zeros((classes.size, d))
    for start in _blocks(features.shape[0], FIT_BLOCK_ROWS):
        x = features[start : start + FIT_BLOCK_ROWS].astype(np.float64)
        np.add.at(sums, index[start : start + FIT_BLOCK_ROWS], x)
    means = sums / counts[:, None]
    cov = np.zeros((d, d))
    for start in _blocks(features.shape[0], FIT_BLOCK_ROWS):
        x = features[start : start + FIT_BLOCK_ROWS].astype(np.float64) - means[index[start : start + FIT_BLOCK_ROWS]]
        cov += x.T @ x
    return classes.astype(np.int64), means, cov / features.shape[0]


def _background_gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Gaussian over all fit rows: ``(mean (D,), covariance (D, D))``, covariance with 1/N."""
    n, d = features.shape
    total = np.zeros(d)
    for start in _blocks(n, FIT_BLOCK_ROWS):
        total += features[start : start + FIT_BLOCK_ROWS].astype(np.float64).sum(axis=0)
    mean = total / n
    cov = np.zeros((d, d))
    for start in _blocks(n, FIT_BLOCK_ROWS):
        x = features[start : start + FIT_BLOCK_ROWS].astype(np.float64) - mean
        cov += x.T @ x
    return mean, cov / n


def _min_class_distance(x: np.ndarray, means_white: np.ndarray, center: np.ndarray, whitener: np.ndarray) -> np.ndarray:
    """``x: (b, D)`` -> ``(b,) float64`` min over classes of ‖(x − μ_c) L‖², with ``means_white`` = (μ_c − center) L
    (centring first keeps the expansion ‖z‖² − 2 z·m + ‖m‖² away from cancellation)."""
    z = (x.astype(np.float64) - center) @ whitener
    cross = z @ means_white.T  # (b, K)
    d2 = (z * z).sum(axis=1)[:, None] - 2.0 * cross + (means_white * means_white).sum(axis=1)[None, :]
    return np.maximum(d2.min(axis=1), 0.0)


# ------------------------------------------------------------------------------------------------ Mahalanobis


@dataclass(frozen=True)
class MahalanobisStats:
    """Class means and the tied covariance's pseudo-inverse square root.

    classes: (K,) int64 class indices with a mean; means: (K, D) float64; whitener: (D, r) float64 with
    whitener @ whitener.T = pinv(Σ).
    """

    classes: np.ndarray
    means: np.ndarray
    whitener: np.ndarray
    provenance: Provenance


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray, *, fit_set_sha256: str = "") -> MahalanobisStats:
    """Lee et al. 2018: class-conditional Gaussians with one shared covariance, fitted on the fit set's labels."""
    x = _fit_matrix(features, "features")
    classes, means, cov = _class_gaussians(x, labels)
    params = {"covariance": "tied", "distance": "squared"}
    return MahalanobisStats(
        classes, means, _whitener(cov), Provenance("mahalanobis", fit_set_sha256, x.shape[0], x.shape[1], params)
    )


def score_mahalanobis(stats: MahalanobisStats, features: np.ndarray, *, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """κ = −min_c (x − μ_c)ᵀ Σ⁻¹ (x − μ_c): ``(n,) float64`` ≤ 0."""
    x = _matrix(features, "features")
    _check_width(x, stats.means.shape[1], "mahalanobis")
    center = stats.means.mean(axis=0)
    means_white = (stats.means - center) @ stats.whitener
    out = np.empty(x.shape[0])
    for start in _blocks(x.shape[0], block_rows):
        block = x[start : start + block_rows]
        out[start : start + block.shape[0]] = -_min_class_distance(block, means_white, center, stats.whitener)
    return out


# ---------------------------------------------------------------------------------------- Relative Mahalanobis


@dataclass(frozen=True)
class RelativeMahalanobisStats:
    """Mahalanobis statistics plus one background Gaussian over all fit rows (mean (D,), whitener (D, r0))."""

    classes: np.ndarray
    means: np.ndarray
    whitener: np.ndarray
    background_mean: np.ndarray
    background_whitener: np.ndarray
    provenance: Provenance


def fit_relative_mahalanobis(
    features: np.ndarray, labels: np.ndarray, *, fit_set_sha256: str = ""
) -> RelativeMahalanobisStats:
    """Ren et al. 2021: the Mahalanobis fit and a class-agnostic background Gaussian N(μ₀, Σ₀) on the same rows."""
    x = _fit_matrix(features, "features")
    classes, means, cov = _class_gaussians(x, labels)
    mean0, cov0 = _background_gaussian(x)
    params = {"covariance": "tied", "distance": "squared"}
    return RelativeMahalanobisStats(
        classes, means, _whitener(cov), mean0, _whitener(cov0),
        Provenance("relative_mahalanobis", fit_set_sha256, x.shape[0], x.shape[1], params),
    )


def score_relative_mahalanobis(
    stats: RelativeMahalanobisStats, features: np.ndarray, *, block_rows: int = BLOCK_ROWS
) -> np.ndarray:
    """κ = −min_c [MD_c(x) − MD₀(x)] = MD₀(x) − min_c MD_c(x), squared distances: ``(n,) float64``."""
    x = _matrix(features, "features")
    _check_width(x, stats.means.shape[1], "relative_mahalanobis")
    center = stats.means.mean(axis=0)
    means_white = (stats.means - center) @ stats.whitener
    out = np.empty(x.shape[0])
    for start in _blocks(x.shape[0], block_rows):
        block = x[start : start + block_rows]
        z0 = (block.astype(np.float64) - stats.background_mean) @ stats.background_whitener
        md0 = (z0 * z0).sum(axis=1)
        out[start : start + block.shape[0]] = md0 - _min_class_distance(block, means_white, center, stats.whitener)
    return out


# ------------------------------------------------------------------------------------------------------- KNN


def knn_k(n_fit: int) -> int:
    """Sun et al. 2022's k scaled with the fit-set size: k = 1000 for the full ImageNet-1k train set
    (1,281,167 images) and k = 10 for their 1 % sample, i.e. k = max(1, round(1000 · n_fit / 1,281,167))."""
    if n_fit < 1:
        raise ValueError(f"n_fit must be >= 1, got {n_fit}")
    return max(1, round(KNN_K_FULL * n_fit / IMAGENET_TRAIN_SIZE))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32 (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class KNNStats:
    """The fit bank of unit-norm features and k. bank: (n_fit, D) float32."""

    bank: np.ndarray
    k: int
    provenance: Provenance


def fit_knn(features: np.ndarray, *, k: int | None = None, fit_set_sha256: str = "") -> KNNStats:
    """Sun et al. 2022: L2-normalised fit features form the bank; k defaults to :func:`knn_k` (n_fit)."""
    x = _fit_matrix(features, "features")
    k = knn_k(x.shape[0]) if k is None else int(k)
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in [1, n_fit={x.shape[0]}], got {k}")
    bank = np.concatenate([_unit_rows(x[s : s + FIT_BLOCK_ROWS]) for s in _blocks(x.shape[0], FIT_BLOCK_ROWS)])
    params = {"k": k, "normalize": "l2", "search": "exact"}
    return KNNStats(bank, k, Provenance("knn", fit_set_sha256, x.shape[0], x.shape[1], params))


def score_knn(stats: KNNStats, features: np.ndarray, *, block_bytes: int = KNN_BLOCK_BYTES) -> np.ndarray:
    """κ = −‖z − z_(k)‖: minus the Euclidean distance from the unit-norm query z to its k-th nearest unit-norm fit
    feature, ``(n,) float64`` in [−2, 0]. Exact search: float32 cosine similarities of a block of queries against
    the whole bank (block × n_fit × 4 bytes ≤ ``block_bytes``) select the k-th nearest by partition; its distance
    is then recomputed in float64 as ‖z − b‖ (2 − 2·cos in float32 would lose precision at small distances)."""
    x = _matrix(features, "features")
    _check_width(x, stats.bank.shape[1], "knn")
    rows = max(1, int(block_bytes) // (4 * stats.bank.shape[0]))
    out = np.empty(x.shape[0])
    col = stats.bank.shape[0] - stats.k
    for start in _blocks(x.shape[0], rows):
        z = _unit_rows(x[start : start + rows])
        sims = z @ stats.bank.T  # (b, n_fit) float32
        kth = np.argpartition(sims, col, axis=1)[:, col]
        z64 = x[start : start + rows].astype(np.float64)
        norms = np.linalg.norm(z64, axis=1, keepdims=True)
        z64 /= np.where(norms > 0, norms, 1.0)
        out[start : start + z.shape[0]] = -np.linalg.norm(z64 - stats.bank[kth].astype(np.float64), axis=1)
    return out


# ----------------------------------------------------------------------------------------- ViM and Residual


def vim_dim(feature_dim: int) -> int:
    """ViM's principal-space dimension by feature width (Wang et al. 2022, their code): 1000 when D ≥ 2048, 512
    when D ≥ 768, else D // 2."""
    if feature_dim >= 2048:
        return 1000
    if feature_dim >= 768:
        return 512
    return feature_dim // 2


@dataclass(frozen=True)
class ResidualStats:
    """The origin u = −pinv(W) b and an orthonormal basis of the residual space (D, D − dim) float64."""

    origin: np.ndarray
    residual_basis: np.ndarray
    dim: int
    provenance: Provenance


@dataclass(frozen=True)
class ViMStats:
    """ViM: the residual space (as :class:`ResidualStats`), the head and α = mean max logit / mean residual norm."""

    origin: np.ndarray
    residual_basis: np.ndarray
    dim: int
    alpha: float
    head: LinearHead
    provenance: Provenance


def _residual_space(x: np.ndarray, head: LinearHead, dim: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """origin u = −pinv(W) b; eigenvectors of the second moment of x − u, (1/N) Σ (x − u)(x − u)ᵀ (ViM's
    ``EmpiricalCovariance(assume_centered=True)``), beyond the ``dim`` largest eigenvalues."""
    d = x.shape[1]
    dim = vim_dim(d) if dim is None else int(dim)
    if not 1 <= dim < d:
        raise ValueError(f"the principal dimension must be in [1, {d - 1}] for {d}-dim features, got {dim}")
    origin = -np.linalg.pinv(head.weight) @ head.bias
    moment = np.zeros((d, d))
    for start in _blocks(x.shape[0], FIT_BLOCK_ROWS):
        c = x[start : start + FIT_BLOCK_ROWS].astype(np.float64) - origin
        moment += c.T @ c
    _, eigvecs = np.linalg.eigh(moment / x.shape[0])  # ascending: the first d − dim span the residual space
    return origin, np.ascontiguousarray(eigvecs[:, : d - dim]), dim


def _residual_norm(x: np.ndarray, origin: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return np.linalg.norm((x.astype(np.float64) - origin) @ basis, axis=1)


def fit_residual(
    features: np.ndarray, head: LinearHead, *, dim: int | None = None, fit_set_sha256: str = ""
) -> ResidualStats:
    """Residual (Wang et al. 2022): the residual space of the fit features around u = −pinv(W) b."""
    x = _fit_matrix(features, "features")
    origin, basis, dim = _residual_space(x, _check_head(head, x.shape[1], "residual"), dim)
    provenance = Provenance("residual", fit_set_sha256, x.shape[0], x.shape[1], {"dim": dim})
    return ResidualStats(origin, basis, dim, provenance)


def score_residual(stats: ResidualStats, features: np.ndarray, *, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """κ = −‖(x − u) R‖ with R the residual basis: ``(n,) float64`` ≤ 0."""
    x = _matrix(features, "features")
    _check_width(x, stats.origin.shape[0], "residual")
    out = np.empty(x.shape[0])
    for start in _blocks(x.shape[0], block_rows):
        block = x[start : start + block_rows]
        out[start : start + block.shape[0]] = -_residual_norm(block, stats.origin, stats.residual_basis)
    return out


def fit_vim(features: np.ndarray, head: LinearHead, *, dim: int | None = None, fit_set_sha256: str = "") -> ViMStats:
    """ViM (Wang et al. 2022): the residual space, and α = mean_fit(max_c logit) / mean_fit(‖(x − u) R‖)."""
    x = _fit_matrix(features, "features")
    head = _check_head(head, x.shape[1], "vim")
    origin, basis, dim = _residual_space(x, head, dim)
    max_logit_sum = residual_sum = 0.0
    for start in _blocks(x.shape[0], FIT_BLOCK_ROWS):
        block = x[start : start + FIT_BLOCK_ROWS]
        max_logit_sum += float(head.logits(block).max(axis=1).sum())
        residual_sum += float(_residual_norm(block, origin, basis).sum())
    if residual_sum <= 0:
        raise ValueError("vim: the fit features have no residual outside the principal space (alpha undefined)")
    alpha = max_logit_sum / residual_sum
    params = {"dim": dim, "alpha": alpha}
    return ViMStats(origin, basis, dim, alpha, head, Provenance("vim", fit_set_sha256, x.shape[0], x.shape[1], params))


def score_vim(stats: ViMStats, features: np.ndarray, *, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """κ = logsumexp(W x + b) − α ‖(x − u) R‖ (energy minus the scaled virtual logit): ``(n,) float64``."""
    x = _matrix(features, "features")
    _check_width(x, stats.origin.shape[0], "vim")
    out = np.empty(x.shape[0])
    for start in _blocks(x.shape[0], block_rows):
        block = x[start : start + block_rows]
        residual = _residual_norm(block, stats.origin, stats.residual_basis)
        out[start : start + block.shape[0]] = energy(stats.head.logits(block)) - stats.alpha * residual
    return out


# ------------------------------------------------------------------------------------------------------ ReAct


@dataclass(frozen=True)
class ReActStats:
    """ReAct: the activation clip c (the ``percentile`` of all fit activations) and the head."""

    threshold: float
    percentile: float
    head: LinearHead
    provenance: Provenance


def fit_react(
    features: np.ndarray, head: LinearHead, *, percentile: float = 90.0, fit_set_sha256: str = ""
) -> ReActStats:
    """Sun et al. 2021: c = the ``percentile``-th percentile (numpy's linear interpolation) of every activation
    of the fit features, flattened (computed in the features' dtype, fp16 widened to float32)."""
    x = _fit_matrix(features, "features")
    head = _check_head(head, x.shape[1], "react")
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    threshold = float(np.percentile(x if x.dtype.itemsize >= 4 else x.astype(np.float32), percentile))
    params = {"percentile": float(percentile), "threshold": threshold}
    provenance = Provenance("react", fit_set_sha256, x.shape[0], x.shape[1], params)
    return ReActStats(threshold, float(percentile), head, provenance)


def score_react(stats: ReActStats, features: np.ndarray, *, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """κ = logsumexp(W min(x, c) + b), the energy of the logits recomputed from clipped features: ``(n,) float64``."""
    x = _matrix(features, "features")
    _check_width(x, stats.head.feature_dim, "react")
    out = np.empty(x.shape[0])
    for start in _blocks(x.shape[0], block_rows):
        block = np.minimum(x[start : start + block_rows].astype(np.float64), stats.threshold)
        out[start : start + block.shape[0]] = energy(stats.head.logits(block))
    return out


# ------------------------------------------------------------------------------------------------------ ASH-S


@dataclass(frozen=True)
class ASHStats:
    """ASH-S: the pruning percentile p and the head (nothing is fitted on data)."""

    percentile: float
    head: LinearHead
    provenance: Provenance


def fit_ash_s(head: LinearHead, *, percentile: float = 90.0) -> ASHStats:
    """Djurisic et al. 2023: ASH-S needs only p (no fit data)."""
    if not 0.0 <= percentile < 100.0:
        raise ValueError(f"percentile must be in [0, 100), got {percentile}")
    if head is None:
        raise ValueError("detector 'ash_s' needs the model's linear head (W, b)")
    params = {"percentile": float(percentile)}
    return ASHStats(float(percentile), head, Provenance("ash_s", "", 0, head.feature_dim, params))


def ash_s(features: np.ndarray, percentile: float) -> np.ndarray:
    """ASH-S activation shaping, ``(n, D) float64``: per row, keep the k = D − round(D·p/100) largest values, zero
    the rest, and multiply the kept ones by exp(s₁ / s₂) with s₁ the row sum before and s₂ after pruning (the
    reference code's ``ash_s``; ties at the cut keep the lowest indices: np.argpartition order)."""
    x = np.asarray(features, dtype=np.float64)
    d = x.shape[1]
    k = d - round(d * percentile / 100.0)
    if k < 1:
        raise ValueError(f"ASH-S at percentile {percentile} keeps no activation of a {d}-dim feature")
    s1 = x.sum(axis=1)
    keep = np.argpartition(-x, k - 1, axis=1)[:, :k]
    shaped = np.zeros_like(x)
    rows = np.arange(x.shape[0])[:, None]
    shaped[rows, keep] = x[rows, keep]
    s2 = shaped.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.exp(s1 / s2)
    if not np.isfinite(scale).all():
        raise ValueError("ASH-S: a feature row's kept activations sum to zero (or the scale overflows)")
    return shaped * scale[:, None]


def score_ash_s(stats: ASHStats, features: np.ndarray, *, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """κ = logsumexp(W ash_s(x) + b): ``(n,) float64``."""
    x = _matrix(features, "features")
    _check_width(x, stats.head.feature_dim, "ash_s")
    out = np.empty(x.shape[0])
    for start in _blocks(x.shape[0], block_rows):
        shaped = ash_s(x[start : start + block_rows], stats.percentile)
        out[start : start + shaped.shape[0]] = energy(stats.head.logits(shaped))
    return out


# -------------------------------------------------------------------------------------------------------- GEN


@dataclass(frozen=True)
class GENStats:
    """GEN: γ and M (nothing is fitted on data)."""

    gamma: float
    top_m: int
    provenance: Provenance


def fit_gen(*, gamma: float = 0.1, top_m: int = 100) -> GENStats:
    """Liu et al. 2023: generalized entropy with γ = 0.1 over the M = 100 largest probabilities (ImageNet)."""
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must be in (0, 1), got {gamma}")
    if top_m < 1:
        raise ValueError(f"top_m must be >= 1, got {top_m}")
    return GENStats(float(gamma), int(top_m), Provenance("gen", "", 0, 0, {"gamma": float(gamma), "top_m": int(top_m)}))


def score_gen(stats: GENStats, logits: np.ndarray, *, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """κ = −Σ_{j ∈ top-M} p_j^γ (1 − p_j)^γ over the M largest softmax probabilities (all C when C < M):
    ``(n,) float64`` in [−M·4^{−γ}, 0]."""
    z = _matrix(logits, "logits")
    if z.shape[1] < 2:
        raise ValueError(f"logits must have C >= 2 classes, got {z.shape[1]}")
    m = min(stats.top_m, z.shape[1])
    out = np.empty(z.shape[0])
    for start in _blocks(z.shape[0], block_rows):
        p = softmax(z[start : start + block_rows])
        top = np.partition(p, p.shape[1] - m, axis=1)[:, p.shape[1] - m :]
        out[start : start + p.shape[0]] = -(top**stats.gamma * (1.0 - top) ** stats.gamma).sum(axis=1)
    return out


# -------------------------------------------------------------------------------------------------- registry

Stats = (
    MahalanobisStats | RelativeMahalanobisStats | KNNStats | ViMStats | ResidualStats | ReActStats | ASHStats | GENStats
)


@dataclass(frozen=True)
class Detector:
    """One registered detector.

    needs: what it reads, among :data:`NEEDS` (``labels`` = fit-set labels; ``head`` = the model's linear
    layer); fits_on_data: whether ``fit`` reads fit-set arrays (False: ASH-S, GEN need none);
    fit(inputs, head, fit_set_sha256, **params) -> stats; score(stats, inputs) -> (n,) float64 κ;
    stats_type: the stats dataclass; defaults: paper hyper-parameters (None = derived from the fit set);
    citation: the paper.
    """

    name: str
    needs: tuple[str, ...]
    fits_on_data: bool
    fit: Callable[..., Any]
    score: Callable[[Any, DetectorInputs], np.ndarray]
    stats_type: type
    defaults: Mapping[str, Any]
    citation: str


def _features_of(inputs: DetectorInputs, name: str) -> np.ndarray:
    return _require(inputs, "features", name)


DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector(
            "mahalanobis", ("features", "labels"), True,
            lambda inputs, head=None, fit_set_sha256="": fit_mahalanobis(
                _features_of(inputs, "mahalanobis"), _require(inputs, "labels", "mahalanobis"),
                fit_set_sha256=fit_set_sha256,
            ),
            lambda stats, inputs: score_mahalanobis(stats, _features_of(inputs, "mahalanobis")),
            MahalanobisStats, {},
            "Lee, Lee, Lee & Shin, A Simple Unified Framework for Detecting Out-of-Distribution Samples and "
            "Adversarial Attacks, NeurIPS 2018",
        ),
        Detector(
            "relative_mahalanobis", ("features", "labels"), True,
            lambda inputs, head=None, fit_set_sha256="": fit_relative_mahalanobis(
                _features_of(inputs, "relative_mahalanobis"), _require(inputs, "labels", "relative_mahalanobis"),
                fit_set_sha256=fit_set_sha256,
            ),
            lambda stats, inputs: score_relative_mahalanobis(stats, _features_of(inputs, "relative_mahalanobis")),
            RelativeMahalanobisStats, {},
            "Ren, Fort, Liu, Roy, Padhy & Lakshminarayanan, A Simple Fix to Mahalanobis Distance for Improving "
            "Near-OOD Detection, arXiv 2106.09022 (2021)",
        ),
        Detector(
            "knn", ("features",), True,
            lambda inputs, head=None, fit_set_sha256="", k=None: fit_knn(
                _features_of(inputs, "knn"), k=k, fit_set_sha256=fit_set_sha256
            ),
            lambda stats, inputs: score_knn(stats, _features_of(inputs, "knn")),
            KNNStats, {"k": None},
            "Sun, Ming, Zhu & Li, Out-of-Distribution Detection with Deep Nearest Neighbors, ICML 2022",
        ),
        Detector(
            "vim", ("features", "head"), True,
            lambda inputs, head=None, fit_set_sha256="", dim=None: fit_vim(
                _features_of(inputs, "vim"), head, dim=dim, fit_set_sha256=fit_set_sha256
            ),
            lambda stats, inputs: score_vim(stats, _features_of(inputs, "vim")),
            ViMStats, {"dim": None},
            "Wang, Li, Feng & Zhang, ViM: Out-Of-Distribution with Virtual-logit Matching, CVPR 2022",
        ),
        Detector(
            "residual", ("features", "head"), True,
            lambda inputs, head=None, fit_set_sha256="", dim=None: fit_residual(
                _features_of(inputs, "residual"), head, dim=dim, fit_set_sha256=fit_set_sha256
            ),
            lambda stats, inputs: score_residual(stats, _features_of(inputs, "residual")),
            ResidualStats, {"dim": None},
            "Wang, Li, Feng & Zhang, ViM: Out-Of-Distribution with Virtual-logit Matching, CVPR 2022 (Residual)",
        ),
        Detector(
            "react", ("features", "head"), True,
            lambda inputs, head=None, fit_set_sha256="", percentile=90.0: fit_react(
                _features_of(inputs, "react"), head, percentile=percentile, fit_set_sha256=fit_set_sha256
            ),
            lambda stats, inputs: score_react(stats, _features_of(inputs, "react")),
            ReActStats, {"percentile": 90.0},
            "Sun, Guo & Li, ReAct: Out-of-distribution Detection With Rectified Activations, NeurIPS 2021",
        ),
        Detector(
            "ash_s", ("features", "head"), False,
            lambda inputs=None, head=None, fit_set_sha256="", percentile=90.0: fit_ash_s(head, percentile=percentile),
            lambda stats, inputs: score_ash_s(stats, _features_of(inputs, "ash_s")),
            ASHStats, {"percentile": 90.0},
            "Djurisic, Bozanic, Ashok & Liu, Extremely Simple Activation Shaping for Out-of-Distribution "
            "Detection, ICLR 2023",
        ),
        Detector(
            "gen", ("logits",), False,
            lambda inputs=None, head=None, fit_set_sha256="", gamma=0.1, top_m=100: fit_gen(gamma=gamma, top_m=top_m),
            lambda stats, inputs: score_gen(stats, _require(inputs, "logits", "gen")),
            GENStats, {"gamma": 0.1, "top_m": 100},
            "Liu, Lochman & Zach, GEN: Pushing the Limits of Softmax-Based Out-of-Distribution Detection, CVPR 2023",
        ),
    )
}
"""Every detector by name, in the order of docs/detectors.md."""


def detector(name: str) -> Detector:
    """The registered detector ``name``; ValueError naming the registered ones otherwise."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; registered: {', '.join(DETECTORS)}")
    return DETECTORS[name]


def score(stats: Stats, inputs: DetectorInputs) -> np.ndarray:
    """κ of fitted ``stats`` on ``inputs``: ``(n,) float64``, dispatched by ``stats.provenance.detector``."""
    return detector(stats.provenance.detector).score(stats, inputs)


# ------------------------------------------------------------------------------------------------- storage

_META_KEY = "__meta__"


def stats_to_arrays(stats: Stats) -> dict[str, np.ndarray]:
    """Fitted statistics as plain arrays, for ``np.savez`` or Parquet list columns.

    Array fields keep their names; the head becomes ``head.weight`` / ``head.bias``; scalar fields and the
    provenance go into ``__meta__``, a 0-d unicode array holding JSON (``{"detector", "fields", "provenance"}``).
    """
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for f in dataclasses.fields(stats):
        value = getattr(stats, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        elif isinstance(value, LinearHead):
            arrays[f"{f.name}.weight"], arrays[f"{f.name}.bias"] = value.weight, value.bias
        elif isinstance(value, Provenance):
            continue
        else:
            scalars[f.name] = value
    meta = {"detector": stats.provenance.detector, "fields": scalars,
            "provenance": dataclasses.asdict(stats.provenance)}
    arrays[_META_KEY] = np.array(json.dumps(meta, sort_keys=True))
    return arrays


def stats_from_arrays(arrays: Mapping[str, np.ndarray]) -> Stats:
    """The inverse of :func:`stats_to_arrays` (e.g. over an opened ``.npz``)."""
    if _META_KEY not in arrays:
        raise ValueError(f"not detector statistics: no {_META_KEY!r} entry")
    meta = json.loads(str(np.asarray(arrays[_META_KEY])))
    cls = detector(meta["detector"]).stats_type
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if hint is Provenance:
            values[f.name] = Provenance(**meta["provenance"])
        elif hint is LinearHead:
            values[f.name] = LinearHead(np.asarray(arrays[f"{f.name}.weight"]), np.asarray(arrays[f"{f.name}.bias"]))
        elif hint is np.ndarray:
            values[f.name] = np.asarray(arrays[f.name])
        else:
            values[f.name] = meta["fields"][f.name]
    return cls(**values)


def save_stats(path: str | os.PathLike[str], stats: Stats) -> None:
    """Write ``stats`` as an uncompressed ``.npz`` atomically (:func:`common.atomic_output`)."""
    arrays = stats_to_arrays(stats)
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_stats(path: str | os.PathLike[str]) -> Stats:
    """Read statistics written by :func:`save_stats`."""
    with np.load(path, allow_pickle=False) as npz:
        return stats_from_arrays({key: npz[key] for key in npz.files})


def kappa_params(stats: Stats) -> str:
    """The ``kappa_params`` JSON of a detector's κ column: its hyper-parameters and fit provenance."""
    p = stats.provenance
    return json.dumps(
        {**p.params, "fit_set_sha256": p.fit_set_sha256, "n_fit": p.n_fit, "feature_dim": p.feature_dim},
        sort_keys=True,
    )


__all__ = [
    "BLOCK_ROWS", "DETECTORS", "IMAGENET_TRAIN_SIZE", "KNN_BLOCK_BYTES", "NEEDS", "ASHStats", "Detector",
    "DetectorInputs", "GENStats", "KNNStats", "LinearHead", "MahalanobisStats", "Provenance", "ReActStats",
    "RelativeMahalanobisStats", "ResidualStats", "ViMStats", "ash_s", "detector", "fit_ash_s", "fit_gen", "fit_knn",
    "fit_mahalanobis", "fit_react", "fit_relative_mahalanobis", "fit_residual", "fit_vim", "kappa_params", "knn_k",
    "load_stats", "save_stats", "score", "score_ash_s", "score_gen", "score_knn", "score_mahalanobis",
    "score_react", "score_relative_mahalanobis", "score_residual", "score_vim", "stats_from_arrays",
    "stats_to_arrays", "vim_dim",
]
