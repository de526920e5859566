"""Inference rules and exact hRC curves against per-sample, per-θ brute force (hsc.md §3, §7.1, §10, §11)."""

from __future__ import annotations

import numpy as np
import pytest
from test_hsc_hierarchy import random_case, random_probs

from hsc import curves, rules


# ---- brute-force rules (one sample, one θ, straight from the hsc.md §3 definitions) -------------------
def brute_rule(oracle, P, rule, theta):
    """P: (V,) node probabilities of one sample -> predicted node id."""
    L, root = oracle.L, oracle.root
    top = int(np.argmax(P[:L]))
    if rule == "selective":
        return top if P[top] >= theta else root
    if rule == "climbing":
        return next((v for v in oracle.ancestors[top] if P[v] >= theta), root)
    if rule == "max_coverage":
        candidates = [v for v in range(oracle.V) if P[v] >= theta]
        if not candidates:
            return root
        return max(candidates, key=lambda v: (oracle.phi[v], P[v], -v))
    max_depth = max(oracle.depth)
    pred, h = top, 0
    while P[pred] < theta and h < max_depth:
        h += 1
        d = max_depth - h
        cut = [v for v in range(oracle.V) if (v >= L and oracle.depth[v] == d) or (v < L and oracle.depth[v] <= d)]
        pred = max(cut, key=lambda v: (P[v], -v))
    return pred if P[pred] >= theta else root


def brute_curve_point(oracle, P, labels, rule, theta):
    pred = [brute_rule(oracle, P[i], rule, theta) for i in range(len(labels))]
    cov = np.mean([oracle.phi[v] for v in pred])
    correct = np.mean([labels[i] in oracle.leafsets[v] for i, v in enumerate(pred)])
    sev = np.mean([oracle.severity(v, labels[i]) for i, v in enumerate(pred)])
    return cov, 1 - correct, sev


def test_jumping_brute_force_matches_the_cut_definition():
    # A hand tree: depth-1 leaf u under the root, cut maxima by hand.
    from hsc.hierarchy import Hierarchy

    H = Hierarchy.from_edges(
        [("r", "a"), ("r", "u"), ("a", "x"), ("a", "b"), ("b", "y"), ("b", "z")], ["x", "y", "z", "u"]
    )
    # depths: x 2, y 3, z 3, u 1, b 2, a 1, r 0; ids: x0 y1 z2 u3 b4 a5 r6
    probs = np.array([[0.30, 0.26, 0.24, 0.20]])
    P = H.node_probs(probs)  # b = 0.5, a = 0.8
    assert rules.jumping(H, P, 0.30).tolist() == [0]  # h=0: x
    assert rules.jumping(H, P, 0.31).tolist() == [4]  # h=1 (depth 2): {b, x, u} -> b (0.5)
    assert rules.jumping(H, P, 0.51).tolist() == [5]  # h=2 (depth 1): {a, u} -> a (0.8)
    assert rules.jumping(H, P, 0.81).tolist() == [6]
    assert rules.max_coverage(H, P, 0.31).tolist() == [4]  # b (2 leaves) has a larger φ than a (3 leaves)
    assert rules.max_coverage(H, P, 0.51).tolist() == [5]
    assert rules.climbing(H, P, 0.31).tolist() == [5]  # x's path: x (0.3), a (0.8)
    assert rules.selective(H, P, 0.31).tolist() == [6]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("rule", rules.RULES)
def test_rules_match_brute_force_at_every_breakpoint(seed, rule):
    H, oracle, _, _ = random_case(seed)
    rng = np.random.default_rng(1000 + seed)
    probs = random_probs(rng, 40, H.num_leaves)
    P = H.node_probs(probs)
    thetas = np.unique(P)
    thetas = np.concatenate([[0.0], thetas, np.nextafter(thetas, -np.inf), np.nextafter(thetas, np.inf), [1.5, np.inf]])
    table = rules.step_table(H, P, rule)
    fn = getattr(rules, rule)
    for theta in thetas[:: max(1, len(thetas) // 60)]:
        expect = [brute_rule(oracle, P[i], rule, theta) for i in range(len(P))]
        assert table.predict(theta).tolist() == expect, (rule, theta)
    theta = float(thetas[len(thetas) // 2])
    np.testing.assert_array_equal(fn(H, probs, theta), table.predict(theta))  # leaf-probability input


@pytest.mark.parametrize("seed", range(6))
def test_theta_zero_predicts_top1_and_root_fallback(seed):
    H, _, _, _ = random_case(seed)
    probs = random_probs(np.random.default_rng(seed), 200, H.num_leaves)
    top = np.argmax(probs, axis=1)
    for rule in rules.RULES:
        fn = getattr(rules, rule)
        np.testing.assert_array_equal(fn(H, probs, 0.0), top)
        assert (fn(H, probs, 1.0 + 1e-9) == H.root).all()
    path_nodes = H.ancestors[top]
    for theta in (0.2, 0.5, 0.9):
        pred = rules.climbing(H, probs, theta)
        assert (path_nodes == pred[:, None]).any(axis=1).all()  # Climbing stays on ŷ's path


@pytest.mark.parametrize("seed", range(7))
@pytest.mark.parametrize("rule", rules.RULES)
def test_exact_curve_equals_brute_force(seed, rule):
    H, oracle, _, _ = random_case(seed)
    rng = np.random.default_rng(2000 + seed)
    probs = random_probs(rng, 30, H.num_leaves)
    labels = rng.integers(0, H.num_leaves, 30)
    P = H.node_probs(probs)
    pts = curves.hrc_points(H, probs, labels, rule)
    assert pts.thetas[0] == 0.0 and pts.thetas[-1] == 1.0
    for k in range(len(pts.thetas)):
        cov, r01, sev = brute_curve_point(oracle, P, labels, rule, pts.thetas[k])
        assert pts.coverage[k] == pytest.approx(cov, abs=1e-12)
        assert pts.risk_01[k] == pytest.approx(r01, abs=1e-12)
        assert pts.risk_severity[k] == pytest.approx(sev, abs=1e-12)
    # hAURC over every distinct node probability (the brute-force curve) equals the sweep's.
    grid = np.unique(np.concatenate([[0.0, 1.0], P[P <= 1].ravel()]))
    brute = np.array([brute_curve_point(oracle, P, labels, rule, t) for t in grid])
    for col, risk in ((1, "01"), (2, "severity")):
        expect = curves.area(grid, brute[:, 0], brute[:, col])
        assert curves.haurc(H, probs, labels, rule, risk) == pytest.approx(expect, abs=1e-12)
    # Coverage at θ = 0 is 1 and the 0/1 risk is the top-1 error.
    assert pts.coverage[0] == pytest.approx(1.0)
    assert pts.risk_01[0] == pytest.approx(1 - np.mean(np.argmax(probs, 1) == labels))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [2, 4])
def test_grid_mode_equals_brute_force_on_the_grid(seed, decimals):
    H, oracle, _, _ = random_case(seed)
    rng = np.random.default_rng(3000 + seed)
    probs = random_probs(rng, 25, H.num_leaves, ties=False)
    labels = rng.integers(0, H.num_leaves, 25)
    P32 = np.minimum(H.node_probs(probs).astype(np.float32), np.float32(1))
    grid = np.unique(np.round(P32, decimals)).astype(np.float64)
    np.testing.assert_array_equal(curves.grid_thresholds(H, probs, decimals), grid)
    P = P32.astype(np.float64)
    for rule in rules.RULES:
        brute = np.array([brute_curve_point(oracle, P, labels, rule, t) for t in grid])
        for col, risk in ((1, "01"), (2, "severity")):
            expect = curves.area(grid, brute[:, 0], brute[:, col])
            got = curves.haurc(H, probs, labels, rule, risk, grid=decimals)
            assert got == pytest.approx(expect, abs=1e-12), (rule, risk)


def test_grid_mode_close_to_exact():
    H, _, _, _ = random_case(4, num_leaves=40, num_internal=25)
    rng = np.random.default_rng(7)
    probs = random_probs(rng, 3000, H.num_leaves, ties=False)
    labels = np.where(rng.random(3000) < 0.6, np.argmax(probs, 1), rng.integers(0, H.num_leaves, 3000))
    for rule in rules.RULES:
        exact = curves.haurc(H, probs, labels, rule)
        assert curves.haurc(H, probs, labels, rule, grid=4) == pytest.approx(exact, abs=2e-4)
        assert curves.haurc(H, probs, labels, rule, grid=2) == pytest.approx(exact, abs=2e-2)


@pytest.mark.parametrize("seed", range(6))
def test_monotonicity(seed):
    H, _, _, _ = random_case(seed, num_leaves=30, num_internal=20)
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, 500, H.num_leaves)
    labels = rng.integers(0, H.num_leaves, 500)
    for rule in ("selective", "climbing", "max_coverage"):  # Jumping's coverage is not monotone
        pts = curves.hrc_points(H, probs, labels, rule)
        assert (np.diff(pts.coverage) <= 1e-12).all(), rule  # coverage never rises with θ
        if rule in ("selective", "climbing"):
            assert (np.diff(pts.risk_01) <= 1e-12).all()
    thetas = np.linspace(0, 1, 41)
    for rule in ("selective", "climbing"):
        correct = np.stack([H.is_correct(getattr(rules, rule)(H, probs, t), labels) for t in thetas])
        assert (correct[1:] >= correct[:-1]).all()  # a correct prediction never becomes wrong


def test_selective_curve_is_generalized_risk_of_msp():
    H, _, _, _ = random_case(2, num_leaves=20, num_internal=14)
    rng = np.random.default_rng(5)
    probs = random_probs(rng, 400, H.num_leaves, ties=False)
    labels = rng.integers(0, H.num_leaves, 400)
    msp = probs.max(1)
    wrong = np.argmax(probs, 1) != labels
    # AUGRC of max-softmax: trapezoid over (coverage, #accepted∧wrong / N) at every confidence cut.
    order = np.argsort(-msp, kind="stable")
    cov = np.concatenate([[0.0], np.arange(1, 401) / 400])
    gen_risk = np.concatenate([[0.0], np.cumsum(wrong[order]) / 400])
    augrc = float(np.trapezoid(gen_risk, cov))
    assert curves.haurc(H, probs, labels, "selective", "01") == pytest.approx(augrc, abs=1e-12)
    # Selective coverage is the accepted fraction: φ(leaf) = 1, φ(root) = 0.
    _, coverage, risk = curves.hrc_curve(H, probs, labels, "selective", "01")
    assert coverage[-1] == 0.0 and risk[-1] == 0.0


def test_gain_and_bad_arguments():
    assert curves.gain(0.8, 1.0) == pytest.approx(20.0)
    H, _, _, _ = random_case(0)
    probs = random_probs(np.random.default_rng(0), 5, H.num_leaves)
    labels = np.zeros(5, int)
    with pytest.raises(ValueError, match="rule: expected one of"):
        curves.haurc(H, probs, labels, "greedy")
    with pytest.raises(ValueError, match="risk: expected one of"):
        curves.haurc(H, probs, labels, "climbing", "hinge")
    with pytest.raises(ValueError, match="grid: expected None"):
        curves.haurc(H, probs, labels, "climbing", grid=3)
    with pytest.raises(ValueError, match="theta: expected a threshold"):
        rules.climbing(H, probs, -0.1)
    with pytest.raises(ValueError, match="labels: expected shape"):
        curves.haurc(H, probs, labels[:3])
    with pytest.raises(ValueError, match=r"probs: expected shape \(N, "):
        rules.selective(H, probs[:, :3], 0.5)


def test_node_probability_input_is_validated_where_used():
    H, _, _, _ = random_case(0)
    P = H.node_probs(random_probs(np.random.default_rng(0), 6, H.num_leaves))
    P[2, 1] = np.nan
    with pytest.raises(ValueError, match="probs: expected finite non-negative node probabilities"):
        rules.selective(H, P, 0.5)
    P[2, 1] = -1.0
    P[2, H.root] = -1.0
    with pytest.raises(ValueError, match="probs: expected finite non-negative node probabilities"):
        curves.haurc(H, P, np.zeros(6, int), "climbing")
