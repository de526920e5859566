"""Benchmark of the flat selective metrics (hsc.selective) and the per-model bundle (analysis_selective).

Prints a Markdown table: operation | N | ours (s) | baseline (s) | ratio | target.

- The bundle: every metric of one model with N = 50,000 samples and 1,000 classes (synthetic float32
  logits), for 3 κ (MSP, negative entropy, max logit) × {all samples, TS eval split without TS, with TS},
  including the float64 softmax pass over 50,000 × 1,000, the temperature fit on 5,000 × 1,000 and the
  scaled pass over 45,000 × 1,000. Target < 0.5 s. Its stages are timed separately below it, with the exp
  kernel the bundle uses (torch's) and, for comparison, the first pass with hsc's default (numpy's).
- Each metric against a per-sample Python loop of the same definition (target ≥ 100×). The loops are timed
  on a subsample of ``--loop-n`` samples and scaled linearly to N (every loop is O(n) after a numpy sort,
  which is included in the loop's time), so the ratio is stated at N.

Usage: ``python benchmarks/bench_selective.py [--quick]`` (quick: N = 10,000 × 100 classes, fewer repeats).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from timing import best_time, best_time_after, print_table  # benchmarks/timing.py (the script folder is on sys.path)

from hsc import selective as S
from hsc.softmax import softmax_stats
from hsc.temperature import fit_temperature_result
from pipelines.analyses.selective import analyse_selective, stratified_split, torch_exp

# ----------------------------------------------------------------------------------------------- loop baselines


def _seq(a: np.ndarray, lists: bool):
    """The loop's view of an array: Python lists (the tightest pure-Python loop) or the numpy array itself
    (element access, as a straightforward port of a loop-based reference would read it)."""
    return a.tolist() if lists else a


def _sorted_lists(conf, correct, lists, presorted=False):
    """The loop's input in stable descending order of conf (numpy's merge sort, part of the loop's time), or
    as given when ``presorted`` (the sort-free comparison)."""
    if presorted:
        return _seq(conf, lists), _seq(correct, lists)
    order = np.argsort(-conf, kind="stable")
    return _seq(conf[order], lists), _seq(correct[order], lists)


def loop_auroc(conf, correct, lists=True, presorted=False):
    c, y = _sorted_lists(conf, correct, lists, presorted)
    n = len(c)
    num, cor_higher, i = 0.0, 0, 0
    while i < n:
        j, cb, eb = i, 0, 0
        while j < n and c[j] == c[i]:
            if y[j]:
                cb += 1
            else:
                eb += 1
            j += 1
        num += eb * cor_higher + 0.5 * eb * cb
        cor_higher += cb
        i = j
    return num / (cor_higher * (n - cor_higher))


def loop_aurc(conf, correct, lists=True, presorted=False):
    _, y = _sorted_lists(conf, correct, lists, presorted)
    errors, total = 0, 0.0
    for k, ok in enumerate(y, start=1):
        errors += not ok
        total += errors / k
    return total / len(y)


def loop_augrc(conf, correct, lists=True, presorted=False):
    _, y = _sorted_lists(conf, correct, lists, presorted)
    n = len(y)
    errors, prev, area = 0, 0.0, 0.0
    for ok in y:
        errors += not ok
        area += (prev + errors / n) / (2 * n)
        prev = errors / n
    return area


def loop_sac(conf, correct, lists=True, a=0.95, forgive=200, presorted=False):
    _, y = _sorted_lists(conf, correct, lists, presorted)
    n = len(y)
    good, strict, late = 0, None, None
    for k, ok in enumerate(y, start=1):
        good += ok
        if good / k < a:
            if strict is None:
                strict = k - 1
            if k > forgive and late is None:
                late = k - 1
                break
    strict_cov = 1.0 if strict is None else strict / n
    if late is None:
        return 1.0
    return late / n if late > forgive else strict_cov


def loop_risk_at_coverage(conf, correct, lists=True, coverage=0.9, presorted=False):
    _, y = _sorted_lists(conf, correct, lists, presorted)
    k_stop = math.ceil(coverage * len(y))
    errors = 0
    for k, ok in enumerate(y, start=1):
        errors += not ok
        if k == k_stop:
            return errors / k
    return math.nan


def loop_ece(conf, correct, lists=True, bins=15):
    sums = [[0, 0.0, 0.0] for _ in range(bins)]
    for c, ok in zip(_seq(conf, lists), _seq(correct, lists), strict=True):
        j = math.ceil(float(c) * bins) - 1
        if j >= 0:
            sums[j][0] += 1
            sums[j][1] += c
            sums[j][2] += ok
    return sum(abs(s1 - s2) for _, s1, s2 in sums) / len(conf)


def loop_adaptive_ece(conf, correct, lists=True, bins=15):
    order = np.argsort(conf, kind="stable")
    c, y = _seq(conf[order], lists), _seq(correct[order], lists)
    n = len(c)
    sums: dict[int, list[float]] = {}
    current = 0
    for p in range(n):
        if p == 0 or c[p - 1] != c[p]:
            current = p * bins // n
        s = sums.setdefault(current, [0.0, 0.0])
        s[0] += c[p]
        s[1] += y[p]
    return sum(abs(a - b) for a, b in sums.values()) / n


def loop_confidence_stats(conf, lists=True):
    s = _seq(np.sort(conf), lists)
    n = len(s)
    mean = sum(s) / n
    var = sum((v - mean) ** 2 for v in s) / (n - 1)
    shift = 1e-7 - min(0.0, s[0])
    gini = sum((2 * i - n - 1) * (v + shift) for i, v in enumerate(s, start=1)) / (n * (sum(s) + n * shift))
    return mean, s[(n - 1) // 2], var, gini


def loop_nll_brier(logits, labels):
    nll = brier = 0.0
    for row, y in zip(logits.tolist(), labels.tolist(), strict=True):
        top = max(row)
        e = [math.exp(v - top) for v in row]
        s = sum(e)
        nll -= math.log(e[y] / s)
        brier += sum((v / s - (j == y)) ** 2 for j, v in enumerate(e))
    return nll / len(labels), brier / len(labels)


# ----------------------------------------------------------------------------------------------- timing


_OURS = {
    "auroc (mid-rank)": S.auroc,
    "aurc": S.aurc,
    "augrc": S.augrc,
    "sac95 (forgive 200)": lambda c, y: S.coverage_at_accuracy(c, y, 0.95),
    "risk at 90% coverage": lambda c, y: S.risk_at_coverage(c, y, 0.9),
    "ece15": S.ece,
    "adaptive ece (15 bins)": S.adaptive_ece,
    "confidence stats": lambda c, y: tuple(S.confidence_stats(c).values()),
}


def _check_same_definition(name: str, loop, conf: np.ndarray, correct: np.ndarray) -> None:
    """The loop baseline computes the same number as ours (else the comparison would be meaningless)."""
    want = np.atleast_1d(np.asarray(_OURS[name](conf, correct), dtype=np.float64))
    got = np.atleast_1d(np.asarray(loop(conf, correct, True), dtype=np.float64))
    if not np.allclose(want, got, rtol=1e-9, atol=1e-12):
        raise AssertionError(f"{name}: loop baseline {got} differs from hsc.selective {want}")


def synthetic(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 logits of a somewhat over-confident model (44% top-1 at 1,000 classes, 61% at 100) and balanced
    labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), -(-n // classes))[:n]
    logits = rng.standard_normal((n, classes), dtype=np.float32) * 2.0
    logits[np.arange(n), labels] += rng.normal(6.0, 2.5, n).astype(np.float32)
    return logits, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 10,000 × 100 classes, fewer repeats")
    parser.add_argument("--loop-n", type=int, default=None, help="subsample size for the Python loops")
    args = parser.parse_args()
    n, classes, repeats = (10_000, 100, 2) if args.quick else (50_000, 1_000, 5)
    loop_n = args.loop_n or (2_000 if args.quick else 5_000)
    logits, labels = synthetic(n, classes)
    rows: list[tuple[str, int, float, float | None, str]] = []

    analyse_selective("bench", logits, labels)  # warm-up (thread pool, page cache)
    t_bundle = best_time(lambda: analyse_selective("bench", logits, labels), repeats)
    rows.append(("bundle: 3 κ × {all, TS eval, TS eval + TS}, all metrics", n, t_bundle, None, "< 0.5 s"))

    fit_idx, eval_idx, _ = stratified_split(labels, n_fit=5000)
    fit_logits, fit_labels = logits[fit_idx], labels[fit_idx]
    stages = [
        (
            f"  stage: float64 softmax pass ({n:,} × {classes:,}), torch exp kernel as in the bundle",
            n,
            lambda: softmax_stats(logits, labels, exp=torch_exp),
        ),
        (
            f"  (the same pass with hsc's default numpy exp kernel, {n:,} × {classes:,})",
            n,
            lambda: softmax_stats(logits, labels),
        ),
        (
            f"  stage: TS fit ({fit_idx.size:,} × {classes:,}, safeguarded Newton)",
            fit_idx.size,
            lambda: fit_temperature_result(fit_logits, fit_labels, exp=torch_exp),
        ),
        (
            f"  stage: scaled softmax pass ({eval_idx.size:,} × {classes:,})",
            eval_idx.size,
            lambda: softmax_stats(logits, labels, beta=0.8, rows=eval_idx, exp=torch_exp),
        ),
    ]
    for name, size, fn in stages:
        rows.append((name, size, best_time(fn, repeats), None, "–"))

    stats = softmax_stats(logits, labels)
    conf, correct = stats.msp, logits.argmax(axis=1) == labels
    key = stats.log_msp
    rows.append(
        (
            "  stage: 9 × summarize (one sort each; the bundle shares 4 of them)",
            n,
            best_time(lambda: [S.summarize(key, correct, values=conf, probability=True) for _ in range(9)], repeats),
            None,
            "–",
        )
    )

    rows.append(
        (
            "  floor of every ranking metric: the stable descending sort alone (stable_descending_order)",
            n,
            best_time(lambda: S.stable_descending_order(conf), repeats),
            None,
            "–",
        )
    )

    sub = np.random.default_rng(1).choice(n, size=min(loop_n, n), replace=False)
    c_sub, y_sub = conf[sub], correct[sub]
    scale = n / sub.size
    metrics = [
        ("auroc (mid-rank)", lambda: S.auroc(conf, correct), loop_auroc),
        ("aurc", lambda: S.aurc(conf, correct), loop_aurc),
        ("augrc", lambda: S.augrc(conf, correct), loop_augrc),
        ("sac95 (forgive 200)", lambda: S.coverage_at_accuracy(conf, correct, 0.95), loop_sac),
        ("risk at 90% coverage", lambda: S.risk_at_coverage(conf, correct, 0.9), loop_risk_at_coverage),
        ("ece15", lambda: S.ece(conf, correct), loop_ece),
        ("adaptive ece (15 bins)", lambda: S.adaptive_ece(conf, correct), loop_adaptive_ece),
        ("confidence stats", lambda: S.confidence_stats(conf), lambda c, y, lists: loop_confidence_stats(c, lists)),
    ]
    by_list: list[tuple[str, int, float, float | None, str]] = []
    loop_repeats = max(1, repeats // 2)
    check = np.random.default_rng(2).choice(n, size=min(500, n), replace=False)
    for name, ours, loop in metrics:
        _check_same_definition(name, loop, conf[check], correct[check])
        t_ours = best_time(ours, repeats)
        t_array = best_time(lambda loop=loop: loop(c_sub, y_sub, False), loop_repeats) * scale
        t_list = best_time(lambda loop=loop: loop(c_sub, y_sub, True), loop_repeats) * scale
        rows.append((name, n, t_ours, t_array, "≥ 100×"))
        by_list.append((name, n, t_ours, t_list, "–"))
    # the sort-free parts: each ranking metric from a fresh RankedScores (as summarize uses the shared sort),
    # against the same loops over the already sorted arrays
    order = S.stable_descending_order(conf)
    sorted_conf, sorted_correct = conf[order], correct[order]
    identity = np.arange(n)
    loop_order = S.stable_descending_order(c_sub)
    sorted_c_sub, sorted_y_sub = c_sub[loop_order], y_sub[loop_order]
    given_sort: list[tuple[str, int, float, float | None, str]] = []
    for name, part, loop in (
        ("auroc (mid-rank)", lambda r: S._auroc(r, "midrank"), loop_auroc),
        ("aurc", lambda r: S._aurc(r, "midrank"), loop_aurc),
        ("augrc", lambda r: S._augrc(r, None), loop_augrc),
        ("sac95 (forgive 200)", lambda r: S._coverage_at_accuracy(r, 0.95, 200, "first", False), loop_sac),
        ("risk at 90% coverage", lambda r: S._risk_at_coverage(r, 0.9, "midrank"), loop_risk_at_coverage),
    ):
        t_part = best_time_after(lambda: S.rank_scores(sorted_conf, sorted_correct, identity), part, repeats * 4)
        t_loop = best_time(lambda loop=loop: loop(sorted_c_sub, sorted_y_sub, False, presorted=True), loop_repeats)
        given_sort.append((name, n, t_part, t_loop * scale, "–"))
    given_sort.append(
        (
            "  (shared by all: rank_scores given the order: its O(n) check, gathers, prefix counts, tie blocks)",
            n,
            best_time(lambda: S.rank_scores(sorted_conf, sorted_correct, identity), repeats * 4),
            None,
            "–",
        )
    )
    nll_sub = sub[: max(1, sub.size // 25)]

    def nll_and_brier() -> tuple[float, float]:
        st = softmax_stats(logits, labels, exp=torch_exp)  # one float64 pass gives both (as the bundle does)
        return float(st.nll.mean()), float(st.brier.mean())

    want = (S.nll(logits[nll_sub], labels[nll_sub]), S.brier(logits[nll_sub], labels[nll_sub]))
    if not np.allclose(want, loop_nll_brier(logits[nll_sub], labels[nll_sub]), rtol=1e-9):
        raise AssertionError("nll + brier: loop baseline differs from hsc.selective")
    t_ours = best_time(nll_and_brier, loop_repeats)
    t_loop = best_time(lambda: loop_nll_brier(logits[nll_sub], labels[nll_sub]), 1) * n / nll_sub.size
    rows.append((f"nll + brier ({classes:,} classes; loop over samples and classes)", n, t_ours, t_loop, "≥ 100×"))

    print(
        f"N = {n:,}, classes = {classes:,}. Loops are timed on {sub.size:,} samples ({nll_sub.size:,} rows for "
        "nll + brier) and scaled linearly to N; each includes the same numpy sort as ours.\n"
    )
    print("Baseline: per-sample Python loop reading the numpy arrays element by element.\n")
    print_table(rows)
    print("\nBaseline: the same loops over Python lists (tolist() first; the tightest pure-Python form).\n")
    print_table(by_list)
    print(
        "\nThe metric part alone, given the shared sort: ours from a fresh RankedScores (cached tie blocks and "
        "curves not yet built), against the same loops (numpy element access) over the already sorted arrays.\n"
    )
    print_table(given_sort)


if __name__ == "__main__":
    main()
