"""Per-class severity scores and the per-model severity levels of the C-OOD benchmark (cood.md §2).

A class's severity is the model's mean confidence κ over its *estimation* images: the more confident the
model is on images of an OOD class, the harder that class is to detect. Classes are ordered by severity,
every window of ``window`` consecutive classes (stride 1) gets the mean severity of its classes, and
``num_levels`` windows are picked at evenly spaced percentiles of the window positions: level 0 is the
easiest window, the last level the hardest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeverityLevels:
    """The severity levels of one (model, κ) benchmark.

    classes: (num_levels, window) int64 indices into the class-score array; row i is level i.
    scores: (num_levels,) float64 mean class severity of each level's window (non-decreasing).
    percentiles: (num_levels,) float64 exact i / (num_levels − 1).
    starts: (num_levels,) int64 position of each window in the severity order.
    order: (K,) int64 class indices sorted by severity (stable, ascending, ties by class index).
    num_classes: K, the number of class scores the levels were built from.
    """

    classes: np.ndarray
    scores: np.ndarray
    percentiles: np.ndarray
    starts: np.ndarray
    order: np.ndarray
    num_classes: int

    @property
    def num_levels(self) -> int:
        """Number of levels."""
        return int(self.classes.shape[0])

    @property
    def window(self) -> int:
        """Number of classes in each level."""
        return int(self.classes.shape[1])


def level_starts(num_windows: int, num_levels: int) -> np.ndarray:
    """Start positions of the levels among ``num_windows`` sliding windows: ``(num_levels,) int64``.

    start_i = int(q_i · L) with q = linspace(0, 1, num_levels), truncated toward zero; only the last start
    is then decremented by one (int(1.0 · L) = L is out of range). cood.md §2.4.
    """
    if num_windows < 1:
        raise ValueError(f"num_windows must be >= 1, got {num_windows}")
    if num_levels < 2:
        raise ValueError(f"num_levels must be >= 2, got {num_levels}")
    q = np.linspace(0.0, 1.0, num_levels)
    starts = (q * num_windows).astype(np.int64)
    starts[-1] -= 1
    return starts


def severity_levels(class_scores: np.ndarray, num_levels: int = 11, window: int = 1000) -> SeverityLevels:
    """Build the severity levels from per-class severity scores.

    class_scores: (K,) float, one severity per OOD class (higher = harder to detect), K >= window.
    num_levels: number of levels (>= 2); window: classes per level (= |Y_ID| = 1000 for ImageNet).

    The classes are sorted by a stable ascending argsort; window j has the mean score of sorted classes
    j..j+window−1 (float64 cumulative sum), for j = 0..L−1 with L = K − window + 1; level i is the window at
    :func:`level_starts`. Raises ValueError when K < window or the scores are not finite.
    """
    scores = np.asarray(class_scores)
    if scores.ndim != 1:
        raise ValueError(f"class_scores must be a 1-D array (K,), got shape {scores.shape}")
    scores = scores.astype(np.float64, copy=False)
    if not np.isfinite(scores).all():
        raise ValueError("class_scores contain NaN or infinite values")
    window = int(window)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    num_classes = scores.shape[0]
    if num_classes < window:
        raise ValueError(f"need at least window={window} OOD classes to build severity levels, got K={num_classes}")
    order = np.argsort(scores, kind="stable")
    cumulative = np.concatenate(([0.0], np.cumsum(scores[order], dtype=np.float64)))
    window_means = (cumulative[window:] - cumulative[:-window]) / window  # (L,)
    starts = level_starts(window_means.shape[0], num_levels)
    return SeverityLevels(
        classes=order[starts[:, None] + np.arange(window)],
        scores=window_means[starts],
        percentiles=np.arange(num_levels, dtype=np.float64) / (num_levels - 1),
        starts=starts,
        order=order,
        num_classes=num_classes,
    )


def class_severity(conf: np.ndarray, class_index: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class mean confidence over estimation samples: ``(K,) float64``.

    conf: (M,) float confidence κ of each estimation sample; class_index: (M,) int in [0, num_classes).
    Raises ValueError when a class has no estimation sample (its severity would be undefined).
    """
    conf = np.asarray(conf)
    labels = np.asarray(class_index)
    if conf.ndim != 1 or labels.shape != conf.shape:
        raise ValueError(
            f"conf and class_index must be 1-D arrays of equal length, got {conf.shape} and {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"class_index must be integers, got dtype {labels.dtype}")
    conf = conf.astype(np.float64, copy=False)
    if not np.isfinite(conf).all():
        raise ValueError("conf contains NaN or infinite values")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"class_index must lie in [0, {num_classes}), found values in [{labels.min()}, {labels.max()}]"
        )
    counts = np.bincount(labels, minlength=num_classes)
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        shown = ", ".join(str(i) for i in missing[:5])
        raise ValueError(
            f"{missing.size} of {num_classes} classes have no estimation sample (class indices {shown}"
            f"{', …' if missing.size > 5 else ''}); every class needs at least one"
        )
    return np.bincount(labels, weights=conf, minlength=num_classes) / counts
