"""cood.detectors: every detector against an independent oracle (scipy distances, brute-force loops, hand-computed
cases) plus properties (invariances, in-class vs far points, block-size independence, storage round trip)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist, mahalanobis
from scipy.special import logsumexp

from cood import detectors as det


def _blobs(n_per_class: int = 60, num_classes: int = 4, dim: int = 8, seed: int = 0):
    """Gaussian classes with distinct means and a shared non-diagonal covariance: (features, labels)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / math.sqrt(dim) + np.eye(dim)
    means = rng.normal(scale=4.0, size=(num_classes, dim))
    labels = np.repeat(np.arange(num_classes), n_per_class)
    x = means[labels] + rng.normal(size=(labels.size, dim)) @ mix
    return x, labels


def _head(num_classes: int, dim: int, seed: int = 1) -> det.LinearHead:
    rng = np.random.default_rng(seed)
    return det.LinearHead(rng.normal(size=(num_classes, dim)), rng.normal(size=num_classes))


# ------------------------------------------------------------------------------------------- Mahalanobis


def _oracle_gaussians(x, y):
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    residuals = np.concatenate([x[y == c] - means[i] for i, c in enumerate(classes)])
    cov = residuals.T @ residuals / len(x)
    return means, cov


def test_mahalanobis_matches_scipy_distance_loop():
    x, y = _blobs()
    queries = np.random.default_rng(5).normal(scale=5.0, size=(40, x.shape[1]))
    means, cov = _oracle_gaussians(x, y)
    vi = np.linalg.inv(cov)
    expected = [-min(mahalanobis(q, m, vi) ** 2 for m in means) for q in queries]
    stats = det.fit_mahalanobis(x, y, fit_set_sha256="f" * 64)
    np.testing.assert_allclose(det.score_mahalanobis(stats, queries), expected, rtol=1e-9)
    np.testing.assert_array_equal(stats.classes, [0, 1, 2, 3])
    assert stats.provenance.n_fit == len(x) and stats.provenance.feature_dim == x.shape[1]


def test_mahalanobis_singular_covariance_uses_the_pseudo_inverse():
    """20 fit rows in 30 dims (rank ≤ 16): the oracle is scipy's distance with np.linalg.pinv of the covariance."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20, 30)), np.repeat(np.arange(4), 5)
    queries = rng.normal(size=(10, 30))
    means, cov = _oracle_gaussians(x, y)
    vi = np.linalg.pinv(cov, rcond=1e-10, hermitian=True)
    expected = [-min(mahalanobis(q, m, vi) ** 2 for m in means) for q in queries]
    np.testing.assert_allclose(det.score_mahalanobis(det.fit_mahalanobis(x, y), queries), expected, rtol=1e-7)


def test_mahalanobis_is_affine_invariant_and_ranks_class_means_first():
    x, y = _blobs(seed=3)
    rng = np.random.default_rng(4)
    queries = rng.normal(scale=5.0, size=(30, x.shape[1]))
    a, t = rng.normal(size=(x.shape[1], x.shape[1])) + 3 * np.eye(x.shape[1]), rng.normal(size=x.shape[1])
    plain = det.score_mahalanobis(det.fit_mahalanobis(x, y), queries)
    moved = det.score_mahalanobis(det.fit_mahalanobis(x @ a.T + t, y), queries @ a.T + t)
    np.testing.assert_allclose(moved, plain, rtol=1e-7)
    stats = det.fit_mahalanobis(x, y)
    at_mean, far = det.score_mahalanobis(stats, np.stack([stats.means[2], stats.means[2] + 100.0]))
    assert at_mean == pytest.approx(0.0, abs=1e-9) and far < -1.0


def test_relative_mahalanobis_matches_scipy_distance_loop():
    x, y = _blobs(seed=6)
    queries = np.random.default_rng(7).normal(scale=5.0, size=(30, x.shape[1]))
    means, cov = _oracle_gaussians(x, y)
    vi = np.linalg.inv(cov)
    vi0 = np.linalg.inv(np.cov(x.T, bias=True))
    mean0 = x.mean(axis=0)
    expected = [
        -min(mahalanobis(q, m, vi) ** 2 - mahalanobis(q, mean0, vi0) ** 2 for m in means) for q in queries
    ]
    stats = det.fit_relative_mahalanobis(x, y)
    np.testing.assert_allclose(det.score_relative_mahalanobis(stats, queries), expected, rtol=1e-8, atol=1e-9)


def test_mahalanobis_needs_labels_matching_the_rows():
    x, y = _blobs()
    with pytest.raises(ValueError, match="labels"):
        det.fit_mahalanobis(x, y[:-1])
    with pytest.raises(ValueError, match="needs labels"):
        det.DETECTORS["mahalanobis"].fit(det.DetectorInputs(features=x))


# --------------------------------------------------------------------------------------------------- KNN


def _knn_oracle(bank, queries, k):
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    return -np.sort(cdist(unit(queries), unit(bank)), axis=1)[:, k - 1]


@pytest.mark.parametrize("k", [1, 7, 300])
def test_knn_matches_the_full_distance_matrix(k):
    rng = np.random.default_rng(k)
    bank, queries = rng.normal(size=(300, 12)), rng.normal(size=(50, 12))
    stats = det.fit_knn(bank, k=k)
    expected = _knn_oracle(bank, queries, k)
    np.testing.assert_allclose(det.score_knn(stats, queries), expected, rtol=1e-6, atol=1e-6)
    # one query row per block: the bounded-memory path gives the same values
    np.testing.assert_allclose(det.score_knn(stats, queries, block_bytes=1), expected, rtol=1e-6, atol=1e-6)


def test_knn_distance_keeps_precision_near_zero():
    """A query equal to a fit row is at distance 0 from it (k = 1); float32 2 − 2·cos would give ≈ 5e-4."""
    bank = np.random.default_rng(0).normal(size=(100, 64))
    assert det.score_knn(det.fit_knn(bank, k=1), bank[:5] * 3.0) == pytest.approx(np.zeros(5), abs=1e-6)


def test_knn_default_k_scales_with_the_fit_set_as_in_the_paper():
    assert det.knn_k(1_281_167) == 1000  # full ImageNet-1k train set
    assert det.knn_k(12_812) == 10  # the paper's 1 % sample
    assert det.knn_k(64_058) == 50
    assert det.knn_k(100) == 1
    assert det.fit_knn(np.random.default_rng(0).normal(size=(200, 4))).k == 1


def test_knn_is_invariant_to_feature_scale_and_refuses_bad_k():
    rng = np.random.default_rng(1)
    bank, queries = rng.normal(size=(80, 6)), rng.normal(size=(20, 6))
    stats = det.fit_knn(bank, k=5)
    scaled = det.score_knn(det.fit_knn(bank * rng.uniform(0.1, 9.0, size=(80, 1)), k=5), queries * 7.0)
    np.testing.assert_allclose(scaled, det.score_knn(stats, queries), atol=1e-6)
    with pytest.raises(ValueError, match="k must be"):
        det.fit_knn(bank, k=81)
    with pytest.raises(ValueError, match="dims"):
        det.score_knn(stats, queries[:, :5])


# ------------------------------------------------------------------------------------------ ViM / Residual


def _vim_oracle(fit, queries, head, dim):
    """Brute force: origin, second moment about it by a sample loop, eigh, per-sample residual norms."""
    w, b = head.weight, head.bias
    u = -np.linalg.pinv(w) @ b
    moment = sum(np.outer(f - u, f - u) for f in fit) / len(fit)
    vals, vecs = np.linalg.eigh(moment)
    null = vecs[:, np.argsort(-vals)[dim:]]
    residual = lambda f: np.linalg.norm(null.T @ (f - u))  # noqa: E731
    alpha = np.mean([np.max(w @ f + b) for f in fit]) / np.mean([residual(f) for f in fit])
    vim = [logsumexp(w @ q + b) - alpha * residual(q) for q in queries]
    return np.array(vim), -np.array([residual(q) for q in queries]), alpha


def test_vim_and_residual_match_a_brute_force_implementation():
    x, _ = _blobs(n_per_class=50, num_classes=5, dim=12, seed=8)
    x = np.abs(x)  # post-ReLU-like features
    head = _head(5, 12)
    queries = np.abs(np.random.default_rng(9).normal(scale=3.0, size=(25, 12)))
    vim, residual, alpha = _vim_oracle(x, queries, head, det.vim_dim(12))
    vim_stats = det.fit_vim(x, head)
    assert vim_stats.dim == 6 and vim_stats.alpha == pytest.approx(alpha, rel=1e-10)
    np.testing.assert_allclose(det.score_vim(vim_stats, queries), vim, rtol=1e-9)
    np.testing.assert_allclose(det.score_residual(det.fit_residual(x, head), queries), residual, rtol=1e-9)
    # an explicit dimension is honoured
    vim3, residual3, _ = _vim_oracle(x, queries, head, 3)
    np.testing.assert_allclose(det.score_vim(det.fit_vim(x, head, dim=3), queries), vim3, rtol=1e-9)
    np.testing.assert_allclose(det.score_residual(det.fit_residual(x, head, dim=3), queries), residual3, rtol=1e-9)


def test_vim_dimension_rule_and_principal_points():
    assert [det.vim_dim(d) for d in (4096, 2048, 2047, 1024, 768, 767, 512)] == [1000, 1000, 512, 512, 512, 383, 256]
    x, _ = _blobs(dim=10, seed=10)
    head = _head(4, 10)
    stats = det.fit_residual(x, head)
    principal = np.linalg.svd(stats.residual_basis, full_matrices=True)[0][:, stats.residual_basis.shape[1] :]
    inside = stats.origin + principal @ np.array([3.0, -2.0, 1.0, 0.5, 4.0])  # no residual: the top score, 0
    outside = inside + 5.0 * stats.residual_basis[:, 0]
    top, lower = det.score_residual(stats, np.stack([inside, outside]))
    assert top == pytest.approx(0.0, abs=1e-9) and lower == pytest.approx(-5.0)
    with pytest.raises(ValueError, match="head"):
        det.fit_vim(x, None)
    with pytest.raises(ValueError, match="principal dimension"):
        det.fit_vim(x, head, dim=10)


# ----------------------------------------------------------------------------------- ReAct / ASH-S / GEN


def test_react_hand_computed():
    fit = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]])  # 90th percentile (linear) = 3 + 0.6 · (4 − 3) = 3.6
    head = det.LinearHead(np.array([[1.0, 0, 0, 0, 0], [0, 0, 0, 1.0, 1.0]]), np.array([0.0, -1.0]))
    stats = det.fit_react(fit, head)
    assert stats.threshold == pytest.approx(3.6)
    # clipped [3.6, 1, 0, 3.6, 2] -> logits [3.6, 3.6 + 2 − 1] = [3.6, 4.6]
    (value,) = det.score_react(stats, np.array([[5.0, 1.0, 0.0, 4.0, 2.0]]))
    assert value == pytest.approx(math.log(math.exp(3.6) + math.exp(4.6)), rel=1e-12)


def test_react_without_clipping_is_the_energy_of_the_plain_logits():
    x = np.abs(np.random.default_rng(11).normal(size=(50, 7)))
    head = _head(3, 7)
    stats = det.fit_react(x, head, percentile=100.0)  # c = the largest fit activation: nothing in x is clipped
    np.testing.assert_allclose(det.score_react(stats, x), logsumexp(x @ head.weight.T + head.bias, axis=1), rtol=1e-12)


def test_ash_s_hand_computed():
    x = np.array([[1.0, 2.0, 3.0, 4.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    # p = 90: keep k = 10 − round(9) = 1 value (10); s1 = 20, s2 = 10 -> scale e^2
    np.testing.assert_allclose(det.ash_s(x, 90.0), [[0, 0, 0, 0, 10 * math.e**2, 0, 0, 0, 0, 0]], rtol=1e-14)
    # p = 60: keep 4 values (10, 4, 3, 2); s2 = 19 -> scale e^(20/19)
    scale = math.exp(20 / 19)
    np.testing.assert_allclose(det.ash_s(x, 60.0), [[0, 2 * scale, 3 * scale, 4 * scale, 10 * scale, 0, 0, 0, 0, 0]])
    # logits: x0 + x4 + 1 and x1 + x4 − 1
    head = det.LinearHead(np.eye(10)[:2] + np.eye(10)[[4, 4]], np.array([1.0, -1.0]))
    (value,) = det.score_ash_s(det.fit_ash_s(head, percentile=60.0), x)
    expected = logsumexp([10 * scale + 1.0, 2 * scale + 10 * scale - 1.0])
    assert value == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="keeps no activation"):
        det.ash_s(x, 99.9)


def test_gen_hand_computed():
    stats = det.fit_gen()
    assert (stats.gamma, stats.top_m) == (0.1, 100)
    logits = np.array([[0.0, 0.0], [0.0, math.log(3.0)]])  # p = (.5, .5) and (.25, .75)
    np.testing.assert_allclose(det.score_gen(stats, logits), [-2 * 0.25**0.1, -2 * 0.1875**0.1], rtol=1e-12)
    top2 = det.fit_gen(top_m=2)
    (value,) = det.score_gen(top2, np.log([[1.0, 2.0, 7.0]]))  # p = (.1, .2, .7): the top 2 are .7 and .2
    assert value == pytest.approx(-((0.2 * 0.8) ** 0.1 + (0.7 * 0.3) ** 0.1), rel=1e-12)
    confident, flat = det.score_gen(stats, np.array([[12.0] + [0.0] * 199, [0.0] * 200]))
    assert confident > flat


# ---------------------------------------------------------------------------------- registry and storage


def _all_stats():
    x, y = _blobs(n_per_class=40, num_classes=3, dim=10, seed=12)
    x = np.abs(x)
    head = _head(3, 10)
    fit = det.DetectorInputs(features=x, logits=head.logits(x), labels=y)
    return {name: d.fit(fit, head, fit_set_sha256="ab" * 32) for name, d in det.DETECTORS.items()}, fit


def test_registry_names_needs_and_scores():
    assert list(det.DETECTORS) == [
        "mahalanobis", "relative_mahalanobis", "knn", "vim", "residual", "react", "ash_s", "gen"
    ]
    stats, fit = _all_stats()
    queries = det.DetectorInputs(features=fit.features[::3] + 0.5, logits=fit.logits[::3])
    for name, d in det.DETECTORS.items():
        assert set(d.needs) <= set(det.NEEDS) and d.citation
        assert isinstance(stats[name], d.stats_type) and stats[name].provenance.detector == name
        values = det.score(stats[name], queries)
        assert values.dtype == np.float64 and values.shape == (len(queries.features),) and np.isfinite(values).all()
    with pytest.raises(ValueError, match="unknown detector 'odin'"):
        det.detector("odin")


@pytest.mark.parametrize(
    "score",
    [det.score_mahalanobis, det.score_relative_mahalanobis, det.score_vim, det.score_residual, det.score_react,
     det.score_ash_s],
)
def test_scores_do_not_depend_on_the_block_size(score):
    stats, fit = _all_stats()
    name = score.__name__.removeprefix("score_")
    np.testing.assert_allclose(score(stats[name], fit.features, block_rows=7), score(stats[name], fit.features),
                               rtol=1e-12, atol=1e-12)


def test_stats_round_trip_through_npz(tmp_path):
    stats, fit = _all_stats()
    for name, s in stats.items():
        path = tmp_path / f"{name}.npz"
        det.save_stats(path, s)
        loaded = det.load_stats(path)
        assert type(loaded) is type(s) and loaded.provenance == s.provenance
        np.testing.assert_array_equal(det.score(loaded, fit), det.score(s, fit))
    params = json.loads(det.kappa_params(stats["knn"]))
    assert params == {"k": 1, "normalize": "l2", "search": "exact", "fit_set_sha256": "ab" * 32, "n_fit": 120,
                      "feature_dim": 10}


def test_bad_inputs_are_one_line_value_errors():
    stats, fit = _all_stats()
    with pytest.raises(ValueError, match="NaN"):
        det.score_mahalanobis(stats["mahalanobis"], np.full((2, 10), np.nan))
    with pytest.raises(ValueError, match="shape"):
        det.score_vim(stats["vim"], np.zeros(10))
    with pytest.raises(ValueError, match="needs logits"):
        det.score(stats["gen"], det.DetectorInputs(features=fit.features))
    with pytest.raises(ValueError, match="head reads"):
        det.fit_react(fit.features[:, :5], stats["react"].head)
