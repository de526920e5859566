"""Benchmark of the feature-space OOD detectors (issue 16): fit + score time per detector, extrapolated to
100k fit × 1M query × 2,048 dims (the issue's target shape) from a measured fraction.

Synthetic data: fit features (n_fit, D) float32 post-ReLU-like values with C = 1,000 classes, query features
(n_query, D) float32, a random linear head (1,000, D). "ours" = :mod:`cood.detectors` (best of ``--repeats``).

Baseline = a plain numpy implementation of the same formula, the way the papers' code computes it:
- Mahalanobis / Relative Mahalanobis: sklearn-style precision (np.linalg.pinv of the tied covariance) and a loop
  over classes, each computing ((x − μ_c) P · (x − μ_c)).sum(1) for all queries (Lee et al.'s per-class loop);
  timed on ``--baseline-classes`` classes and a block of queries, extrapolated linearly (RMDS adds the background
  Gaussian's pinv and distance);
- KNN: the full (queries × fit) distance matrix by the ‖q‖² − 2 q·b + ‖b‖² expansion and a full row sort, timed
  on a block of queries, extrapolated linearly;
- ViM / Residual: the ViM repository's numpy code (np.linalg.eig of the covariance, pinv, one matmul over all
  rows, scipy logsumexp; Residual without the logits);
- ReAct: np.clip, one matmul, logsumexp; ASH-S: a full row sort instead of a partition; GEN: a full row sort of
  the softmax.

Extrapolation: fit times are scaled linearly by target / n_fit (an upper bound: the D × D eigendecompositions
and inverses do not grow with n_fit); score times are linear in the query count, and KNN's also in the fit-bank
size. Memory at the target shape is
not simulated (the scorers work in bounded blocks; the baselines would need the whole matrices).

Usage: python benchmarks/bench_detectors.py [--quick] [--fit N] [--query N] [--dim D]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.special import logsumexp
from timing import best_time  # benchmarks/timing.py (the script folder is on sys.path)

from cood import detectors as det

NUM_CLASSES = 1000


def data(n_fit: int, n_query: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n_fit) % NUM_CLASSES
    centers = np.abs(rng.normal(size=(NUM_CLASSES, dim))).astype(np.float32)
    fit = np.maximum(centers[labels] + rng.normal(size=(n_fit, dim)).astype(np.float32), 0.0)
    query = np.maximum(centers[rng.integers(0, NUM_CLASSES, n_query)] + rng.normal(size=(n_query, dim)).astype(
        np.float32) * 1.5, 0.0)
    head = det.LinearHead(rng.normal(size=(NUM_CLASSES, dim)) / np.sqrt(dim), rng.normal(size=NUM_CLASSES))
    return fit, labels, query, head


# --------------------------------------------------------------------------------------------- baselines


def base_mahalanobis_fit(x, y):
    means = np.stack([x[y == c].mean(axis=0, dtype=np.float64) for c in range(NUM_CLASSES)])
    centred = x - means[y]
    cov = centred.T.astype(np.float64) @ centred / len(x)
    return means, np.linalg.pinv(cov)


def base_mahalanobis_score(stats, q, classes: int):
    """Lee et al.'s per-class loop over the first ``classes`` classes: returns (n, classes) distances."""
    means, precision = stats
    q = q.astype(np.float64)
    out = np.empty((len(q), classes))
    for c in range(classes):
        d = q - means[c]
        out[:, c] = ((d @ precision) * d).sum(axis=1)
    return out


def base_rmds_fit(x, y):
    mean0 = x.mean(axis=0, dtype=np.float64)
    centred = x - mean0
    return base_mahalanobis_fit(x, y), (mean0, np.linalg.pinv(centred.T.astype(np.float64) @ centred / len(x)))


def base_background_score(background, q):
    mean0, precision0 = background
    d = q.astype(np.float64) - mean0
    return ((d @ precision0) * d).sum(axis=1)


def base_knn_score(bank, q, k):
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    d2 = (q * q).sum(1)[:, None] - 2 * q @ bank.T + (bank * bank).sum(1)[None, :]
    return -np.sqrt(np.maximum(np.sort(d2, axis=1)[:, k - 1], 0))


def base_vim_fit(x, head, dim):
    """ViM's fit as its formula reads, in plain numpy: origin u = −W⁺b, the eigenvectors of the covariance of
    x − u beyond the ``dim`` largest eigenvalues (general eigensolver), α = mean max logit / mean residual norm."""
    origin = -(np.linalg.pinv(head.weight) @ head.bias)
    centred = x.astype(np.float64) - origin
    eigenvalues, eigenvectors = np.linalg.eig(centred.T @ centred / len(x))
    largest_first = np.argsort(-eigenvalues.real)
    residual_basis = eigenvectors[:, largest_first[dim:]].real.copy()
    max_logit = (x @ head.weight.T + head.bias).max(axis=1)
    alpha = max_logit.mean() / np.linalg.norm(centred @ residual_basis, axis=1).mean()
    return origin, residual_basis, alpha


def base_vim_score(stats, q, head):
    u, null, alpha = stats
    logits = q @ head.weight.T + head.bias
    return -alpha * np.linalg.norm((q - u) @ null, axis=-1) + logsumexp(logits, axis=-1)


def base_residual_score(stats, q):
    u, null, _ = stats
    return -np.linalg.norm((q - u) @ null, axis=-1)


def base_react_score(c, q, head):
    return logsumexp(np.clip(q, None, c) @ head.weight.T + head.bias, axis=-1)


def base_ash_score(q, head, p=90):
    q = q.astype(np.float64)
    n = q.shape[1]
    k = n - int(np.round(n * p / 100.0))
    s1 = q.sum(1)
    cut = np.sort(q, axis=1)[:, -k][:, None]
    shaped = np.where(q >= cut, q, 0.0)
    shaped *= np.exp(s1 / shaped.sum(1))[:, None]
    return logsumexp(shaped @ head.weight.T + head.bias, axis=-1)


def base_gen_score(logits, gamma=0.1, m=100):
    p = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    top = np.sort(p, axis=1)[:, -m:]
    return -(top**gamma * (1 - top) ** gamma).sum(1)


# ----------------------------------------------------------------------------------------------- driver


def linear_fit_time(measure, n_full: int, target: int) -> float:
    """Time at ``target`` fit rows: the time at ``n_full`` scaled by target / n_full. An upper bound: the D × D
    decompositions inside a fit do not grow with the row count (a two-size slope was too noisy on this VM)."""
    return measure(n_full) * target / n_full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4,000 fit × 4,000 query × 512 dims")
    parser.add_argument("--fit", type=int, default=10_000)
    parser.add_argument("--query", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--target-fit", type=int, default=100_000)
    parser.add_argument("--target-query", type=int, default=1_000_000)
    parser.add_argument("--baseline-classes", type=int, default=10)
    parser.add_argument("--baseline-queries", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        args.fit, args.query, args.dim = 4000, 4000, 512
    n_fit, n_query, dim, reps = args.fit, args.query, args.dim, args.repeats
    fit, labels, query, head = data(n_fit, n_query, dim)
    q_base = query[: args.baseline_queries]
    k = det.knn_k(args.target_fit)
    vim_dim = det.vim_dim(dim)
    fit_scale = args.target_fit / n_fit
    q_scale = args.target_query / n_query
    qb_scale = args.target_query / len(q_base)
    print(f"measured: {n_fit:,} fit × {n_query:,} query × {dim:,} dims, {NUM_CLASSES} classes; "
          f"extrapolated to {args.target_fit:,} fit × {args.target_query:,} query (KNN k = {k}, the target's)")

    def fit_time(fn):
        return lambda n: best_time(lambda: fn(n), reps)

    rows = []  # (detector, ours fit, ours score, base fit, base score) at the target shape, seconds

    # Mahalanobis and Relative Mahalanobis
    maha = det.fit_mahalanobis(fit, labels)
    ours_fit = linear_fit_time(fit_time(lambda n: det.fit_mahalanobis(fit[:n], labels[:n])), n_fit, args.target_fit)
    ours_score = best_time(lambda: det.score_mahalanobis(maha, query), reps) * q_scale
    base_stats = base_mahalanobis_fit(fit, labels)
    base_fit = linear_fit_time(fit_time(lambda n: base_mahalanobis_fit(fit[:n], labels[:n])), n_fit, args.target_fit)
    base_score = (best_time(lambda: base_mahalanobis_score(base_stats, q_base, args.baseline_classes), reps)
                  * NUM_CLASSES / args.baseline_classes * qb_scale)
    rows.append(("mahalanobis", ours_fit, ours_score, base_fit, base_score))
    rmds = det.fit_relative_mahalanobis(fit, labels)
    ours_fit = linear_fit_time(fit_time(lambda n: det.fit_relative_mahalanobis(fit[:n], labels[:n])), n_fit,
                               args.target_fit)
    ours_score = best_time(lambda: det.score_relative_mahalanobis(rmds, query), reps) * q_scale
    base_stats = base_rmds_fit(fit, labels)
    base_fit = linear_fit_time(fit_time(lambda n: base_rmds_fit(fit[:n], labels[:n])), n_fit, args.target_fit)
    classes_time = best_time(lambda: base_mahalanobis_score(base_stats[0], q_base, args.baseline_classes), reps)
    background_time = best_time(lambda: base_background_score(base_stats[1], q_base), reps)
    base_score = (classes_time * NUM_CLASSES / args.baseline_classes + background_time) * qb_scale
    rows.append(("relative_mahalanobis", ours_fit, ours_score, base_fit, base_score))

    # KNN: score cost ∝ queries × bank size
    knn = det.fit_knn(fit, k=min(k, n_fit))
    ours_fit = best_time(lambda: det.fit_knn(fit, k=min(k, n_fit)), reps) * fit_scale
    ours_score = best_time(lambda: det.score_knn(knn, query), reps) * q_scale * fit_scale
    base_score = best_time(lambda: base_knn_score(fit, q_base, min(k, n_fit)), reps) * qb_scale * fit_scale
    rows.append(("knn", ours_fit, ours_score, None, base_score))

    # ViM and Residual
    vim = det.fit_vim(fit, head)
    ours_fit = linear_fit_time(fit_time(lambda n: det.fit_vim(fit[:n], head)), n_fit, args.target_fit)
    ours_score = best_time(lambda: det.score_vim(vim, query), reps) * q_scale
    base_stats = base_vim_fit(fit, head, vim_dim)
    base_fit = linear_fit_time(fit_time(lambda n: base_vim_fit(fit[:n], head, vim_dim)), n_fit, args.target_fit)
    base_score = best_time(lambda: base_vim_score(base_stats, q_base, head), reps) * qb_scale
    rows.append(("vim", ours_fit, ours_score, base_fit, base_score))
    residual = det.fit_residual(fit, head)
    ours_fit = linear_fit_time(fit_time(lambda n: det.fit_residual(fit[:n], head)), n_fit, args.target_fit)
    ours_score = best_time(lambda: det.score_residual(residual, query), reps) * q_scale
    base_score = best_time(lambda: base_residual_score(base_stats, q_base), reps) * qb_scale
    rows.append(("residual", ours_fit, ours_score, base_fit, base_score))

    # ReAct, ASH-S, GEN
    react = det.fit_react(fit, head)
    ours_fit = best_time(lambda: det.fit_react(fit, head), reps) * fit_scale
    ours_score = best_time(lambda: det.score_react(react, query), reps) * q_scale
    base_fit = best_time(lambda: np.percentile(fit.flatten(), 90), reps) * fit_scale
    base_score = best_time(lambda: base_react_score(react.threshold, q_base, head), reps) * qb_scale
    rows.append(("react", ours_fit, ours_score, base_fit, base_score))
    ash = det.fit_ash_s(head)
    ours_score = best_time(lambda: det.score_ash_s(ash, query), reps) * q_scale
    base_score = best_time(lambda: base_ash_score(q_base, head), reps) * qb_scale
    rows.append(("ash_s", 0.0, ours_score, None, base_score))
    logits = head.logits(query).astype(np.float32)
    gen = det.fit_gen()
    ours_score = best_time(lambda: det.score_gen(gen, logits), reps) * q_scale
    base_score = best_time(lambda: base_gen_score(logits[: len(q_base)].astype(np.float64)), reps) * qb_scale
    rows.append(("gen", 0.0, ours_score, None, base_score))

    def cell(value):
        return "–" if value is None else f"{value:,.1f}"

    print("| detector | fit (s) | score (s) | baseline fit (s) | baseline score (s) | score ratio |")
    print("|---|---|---|---|---|---|")
    for name, of, os_, bf, bs in rows:
        ratio = "–" if bs is None else f"{bs / os_:.2f}×"
        print(f"| {name} | {cell(of)} | {cell(os_)} | {cell(bf)} | {cell(bs)} | {ratio} |")
    print("residual baseline fit = ViM's (the same eig; alpha costs one extra matmul)")


if __name__ == "__main__":
    main()
