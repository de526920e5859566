"""ODIN and MC dropout (pipelines.engine.model_confidence) on small random-weight networks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from scipy.stats import entropy
from torch import nn

from pipelines.engine.model_confidence import dropout_report, mc_dropout, msp_t2, odin, odin_perturb

IMAGENET_STD = (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(6, 3, 48, 48, generator=torch.Generator().manual_seed(1))


def test_odin_at_zero_epsilon_is_msp_at_temperature_two_exactly(resnet, images):
    with torch.no_grad():
        logits = resnet(images).numpy()
    assert np.array_equal(odin(resnet, images, IMAGENET_STD, temperature=2.0, epsilon=0.0), msp_t2(logits))
    # msp_t2 itself: max softmax of z / 2, by hand
    z = logits.astype(np.float64) / 2
    assert np.allclose(msp_t2(logits), np.exp(z.max(1)) / np.exp(z).sum(1), rtol=1e-12)


def test_odin_step_is_the_sign_of_the_input_gradient_over_std(resnet, images):
    epsilon, temperature = 1e-3, 2.0
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    # independent oracle: hand-written tempered cross-entropy of the predicted class, gradient w.r.t. x
    x = images.clone().requires_grad_(True)
    logits = resnet(x)
    loss = -(logits / temperature).log_softmax(dim=1).gather(1, logits.argmax(1, keepdim=True)).sum()
    (grad,) = torch.autograd.grad(loss, x)
    expected = images - epsilon * grad.sign() / std
    perturbed = odin_perturb(resnet, images, IMAGENET_STD, temperature, epsilon)
    assert torch.allclose(perturbed, expected, rtol=0, atol=1e-6)
    moved = (perturbed - images).abs()
    step = (epsilon / std).expand_as(moved)
    assert torch.allclose(moved[grad != 0], step[grad != 0], rtol=1e-3)
    assert (grad != 0).sum() > 1000 and torch.all(moved[grad == 0] == 0)  # sign(0) = 0: no step


def test_odin_raises_the_tempered_max_softmax(resnet, images):
    with torch.no_grad():
        base = msp_t2(resnet(images).numpy())
    assert np.mean(odin(resnet, images, IMAGENET_STD, epsilon=1e-4) > base) >= 5 / 6


def test_odin_leaves_parameters_alone_even_under_inference_mode(resnet):
    flags = [p.requires_grad for p in resnet.parameters()]
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    with torch.inference_mode():
        x = torch.randn(2, 3, 64, 64)
        scores = odin(resnet, x, IMAGENET_STD)
    assert scores.shape == (2,) and scores.dtype == np.float64
    assert all(p.grad is None for p in resnet.parameters())
    assert [p.requires_grad for p in resnet.parameters()] == flags
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())


def test_odin_rejects_a_wrong_std(resnet, images):
    with pytest.raises(ValueError, match="std must hold 3 positive"):
        odin(resnet, images, (0.5, 0.5))


def test_mc_dropout_refuses_a_model_without_active_dropout():
    torch.manual_seed(0)
    model = timm.create_model("mobilenetv3_small_100", pretrained=False).eval()  # drop_rate 0
    with pytest.raises(ValueError, match="p > 0"):
        mc_dropout(model, torch.randn(2, 3, 64, 64), passes=3)


def test_mc_dropout_samples_timms_functional_head_dropout():
    torch.manual_seed(0)
    model = timm.create_model("mobilenetv3_small_100", pretrained=False, drop_rate=0.2).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    report = dropout_report(model, x)
    assert report.modules == () and report.functional == (0.2,) and report.count == 1
    with torch.no_grad():
        plain = torch.softmax(model(x).double(), 1).numpy()
    mean_probs, _ = mc_dropout(model, x, passes=4, seed=0)
    assert not np.allclose(mean_probs, plain)
    assert F.dropout.__module__ == "torch.nn.functional" and not model.training  # everything restored
    with torch.no_grad():
        assert np.array_equal(torch.softmax(model(x).double(), 1).numpy(), plain)


class DropoutLinear(nn.Module):
    """Dropout on an 8-feature input, then a linear layer: the MC expectation is a finite sum over 2^8 masks."""

    def __init__(self, p: float):
        super().__init__()
        self.drop = nn.Dropout(p)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.drop(x))


def test_mc_dropout_mean_converges_to_the_exact_expectation():
    torch.manual_seed(0)
    p = 0.5
    model = DropoutLinear(p).eval()
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(3))
    assert dropout_report(model, x).modules == (("drop", 0.5),)
    # brute-force oracle: average the softmax over all 256 equally likely keep-masks
    masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=8)))
    with torch.no_grad():
        exact = torch.stack([torch.softmax(model.fc(x * m / (1 - p)).double(), 1) for m in masks]).mean(0).numpy()
    mean_probs, neg_entropy = mc_dropout(model, x, passes=4000, seed=0)
    assert np.abs(mean_probs - exact).max() < 0.01
    assert np.allclose(neg_entropy, -entropy(mean_probs, axis=1), rtol=1e-12)
    assert np.allclose(mean_probs.sum(1), 1.0) and np.all(neg_entropy <= 0)


def test_mc_dropout_is_deterministic_under_a_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    model = DropoutLinear(0.3).eval()
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(4))
    state = torch.get_rng_state()
    a = mc_dropout(model, x, passes=5, seed=7)
    b = mc_dropout(model, x, passes=5, seed=7)
    c = mc_dropout(model, x, passes=5, seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    single = [mc_dropout(model, x, passes=2, seed=s)[0] for s in (1, 2)]
    assert not np.allclose(single[0], single[1])  # passes differ from one another


def test_mc_dropout_rejects_too_few_passes():
    with pytest.raises(ValueError, match="passes must be >= 2"):
        mc_dropout(DropoutLinear(0.5).eval(), torch.zeros(1, 8), passes=1)


def test_compute_returns_the_requested_columns_from_the_same_functions():
    from pipelines.engine.model_confidence import compute

    torch.manual_seed(0)
    model = DropoutLinear(0.5).eval()
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = model(x).numpy()
    cols = compute(model, x, std=(1.0,) * 8, names=("msp_t2", "mcd_neg_entropy", "mcd_pred"), mc_passes=6, seed=3)
    mean_probs, neg_entropy = mc_dropout(model, x, passes=6, seed=3)
    assert np.array_equal(cols["msp_t2"], msp_t2(logits))
    assert np.array_equal(cols["mcd_neg_entropy"], neg_entropy)
    assert np.array_equal(cols["mcd_pred"], mean_probs.argmax(1)) and cols["mcd_pred"].dtype == np.int64
    with pytest.raises(ValueError, match="unknown model confidence"):
        compute(model, x, std=(1.0,) * 8, names=("odn",))


class ProbesOtherThread(DropoutLinear):
    """While MC dropout runs, another thread's eval-mode functional dropout must stay the identity."""

    seen_by_other_thread: list[bool]

    def forward(self, x):
        import threading

        ones = torch.ones(1000)
        result = []
        worker = threading.Thread(target=lambda: result.append(torch.equal(F.dropout(ones, 0.5, False), ones)))
        worker.start()
        worker.join()
        self.seen_by_other_thread.extend(result)
        return super().forward(x)


def test_mc_dropout_sampling_is_confined_to_the_calling_thread():
    model = ProbesOtherThread(0.5).eval()
    model.seen_by_other_thread = []
    mc_dropout(model, torch.zeros(2, 8), passes=3, seed=0)
    assert model.seen_by_other_thread == [True, True, True]


def test_build_model_drop_rate_gives_mc_dropout_a_head_to_sample():
    from pipelines.zoo import build_model, resolve, weights_fingerprint

    (ms,) = resolve("timm:mobilenetv3_small_100@random")
    plain, dropped = build_model(ms), build_model(ms, drop_rate=0.25)
    assert weights_fingerprint(plain) == weights_fingerprint(dropped)  # same weights, only the head's p differs
    x = torch.zeros(1, 3, 32, 32)
    assert dropout_report(plain, x).count == 0
    assert dropout_report(dropped, x).functional == (0.25,)
    with pytest.raises(ValueError, match="only supported for timm"):
        build_model(resolve("torchvision:mobilenet_v3_small@random")[0], drop_rate=0.2)
