"""Benchmark of the C-OOD analysis (issue 5): per-class severity, severity levels and 11-level evaluation.

Synthetic data at ImageNet scale: K = 18,838 OOD classes (the WordNet-filtered pool) with 150 estimation and
50 test samples each, 50,000 ID samples. "ours" is the best of several repeats of the library functions.

The baseline is a loop-based implementation of the reference algorithm (cood.md §8), written here:
- severity: a per-sample Python loop accumulating each class's sum and count;
- per level: selection of the level's OOD test samples through a (window × samples) class-equality matrix,
  a random permutation of the 100k (score, is-ID) rows, a descending sort, and two per-sample Python passes
  counting agreeing/disagreeing (ID, OOD) pairs (the reference's AUROC = agreeing / all pairs).
The loops and the membership matrix are timed on a subsample and extrapolated linearly to the full size (the
sort is timed at full size). The baseline leaves out the reference's other per-level work (a second pair
count for correctness, AURC and ECE loops), so it is a lower bound on the reference's cost.

Usage: python benchmarks/bench_cood.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from timing import best_time, print_table  # benchmarks/timing.py (the script folder is on sys.path)

from cood.evaluate import evaluate_levels
from cood.severity import class_severity, severity_levels


def loop_severity(conf: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Baseline: per-sample loop accumulating class sums and counts."""
    sums = np.zeros(num_classes)
    counts = np.zeros(num_classes)
    for i in range(conf.shape[0]):
        sums[labels[i]] += conf[i]
        counts[labels[i]] += 1
    return np.divide(sums, counts, out=np.full(num_classes, np.nan), where=counts > 0)


def loop_pair_counts(samples: np.ndarray) -> tuple[float, float]:
    """Baseline: concordant/discordant pair counts by per-sample loops, as the reference algorithm does.

    samples: (n, 2) float64 rows (score, is_id) already sorted by descending score. A backward pass counts
    the OOD samples after each position, a forward pass adds each sample's agreeing/disagreeing pairs;
    rows are read one element at a time.
    """
    n = samples.shape[0]
    ood_after = np.zeros(n)
    for i in range(n - 2, -1, -1):
        ood_after[i] = ood_after[i + 1] + (1 - int(samples[i + 1][1]))
    same, different, ood_before = 0.0, 0.0, 0
    for i in range(n):
        if i:
            ood_before += 1 - int(samples[i - 1][1])
        if samples[i][1]:
            same += ood_after[i]
            different += ood_before
        else:
            different += (n - i - 1) - ood_after[i]
            same += i - ood_before
    return same, different


def reference_level_order(rng: np.random.Generator, id_conf: np.ndarray, ood_conf: np.ndarray) -> np.ndarray:
    """Baseline: stack (score, is_id) rows, permute randomly, sort by descending score (unstable)."""
    rows = np.stack(
        [np.concatenate([ood_conf, id_conf]), np.concatenate([np.zeros(ood_conf.size), np.ones(id_conf.size)])],
        axis=1,
    )
    rows = rows[rng.permutation(rows.shape[0])]
    return rows[np.argsort(-rows[:, 0])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = parser.parse_args()
    num_classes, n_id, repeats, window = (3_000, 10_000, 3, 1000) if args.quick else (18_838, 50_000, 5, 1000)
    n_est, n_test, num_levels = 150, 50, 11

    rng = np.random.default_rng(0)
    class_mean = rng.normal(0.0, 1.0, num_classes)
    est_class = np.repeat(np.arange(num_classes), n_est)
    est_conf = class_mean[est_class] + rng.normal(0.0, 1.0, est_class.size)
    test_class = np.repeat(np.arange(num_classes), n_test)
    test_conf = class_mean[test_class] + rng.normal(0.0, 1.0, test_class.size)
    id_conf = rng.normal(2.0, 1.0, n_id)
    id_correct = rng.random(n_id) < 0.75

    severity = class_severity(est_conf, est_class, num_classes)
    t_sev = best_time(lambda: class_severity(est_conf, est_class, num_classes), repeats)
    sub = est_class.size // 10
    start = time.perf_counter()
    loop_severity(est_conf[:sub], est_class[:sub], num_classes)
    base_sev = (time.perf_counter() - start) * est_class.size / sub

    def levels_and_evaluation() -> object:
        levels = severity_levels(severity, num_levels=num_levels, window=window)
        return evaluate_levels(levels, test_conf, test_class, id_conf, id_correct)

    t_eval = best_time(levels_and_evaluation, repeats)
    levels = severity_levels(severity, num_levels=num_levels, window=window)
    level_classes = levels.classes[num_levels // 2]
    cols = test_class.size // 20
    start = time.perf_counter()
    selected = np.any(level_classes[:, None] == test_class[None, :cols], axis=0)
    select_time = (time.perf_counter() - start) * test_class.size / cols
    level_ood = test_conf[np.isin(test_class, level_classes)]
    start = time.perf_counter()
    ordered = reference_level_order(rng, id_conf, level_ood)
    sort_time = time.perf_counter() - start
    fraction = 10
    start = time.perf_counter()
    loop_pair_counts(ordered[: ordered.shape[0] // fraction])
    loop_time = (time.perf_counter() - start) * fraction
    base_eval = num_levels * (select_time + sort_time + loop_time)
    del selected

    n_eval = f"{n_id:,} ID + {num_classes:,}×{n_test} OOD, {num_levels} levels"
    rows = [
        ("per-class severity (bincount)", f"{num_classes:,}×{n_est}", t_sev, base_sev, "< 0.3 s"),
        ("severity levels + evaluation", n_eval, t_eval, base_eval, "< 0.5 s"),
    ]
    print_table(rows)
    print(
        f"\nbaseline: per-sample Python loops timed on 1/10 of the samples (severity; AUROC pair counts of one "
        f"level) and extrapolated linearly; evaluation baseline = {num_levels} × (class-membership matrix "
        f"{select_time:.3f} s, timed on 1/20 of the OOD samples and extrapolated + permute/sort "
        f"{sort_time:.3f} s + pair-count loops {loop_time:.3f} s)."
    )


if __name__ == "__main__":
    main()
