"""Model-in-the-loop confidence functions (cood.md §5): ODIN (input gradient) and MC dropout (repeated passes).

Both run inside inference, next to the forward pass, and return ``float64`` numpy columns oriented
"higher = more in-distribution", like :mod:`cood.confidence`.

Functional dropout. Besides ``nn.Dropout*`` modules, several timm heads (EfficientNet, MobileNetV3, MnasNet,
GhostNet, legacy SE-ResNet, ResNet, ...) apply ``F.dropout(x, p=self.drop_rate, training=self.training)`` inside
``forward_head``, where ``self`` is the whole model and stays in eval mode. MC dropout therefore switches the
``Dropout*`` modules to train mode *and*, for the duration of the passes only, wraps
``torch.nn.functional.dropout`` so that every call with ``p > 0`` samples a mask (``training=True``). Calls
arriving with ``training=False`` (functional dropout of an eval-mode model) are recorded with their p; the
``Dropout*`` modules with p > 0 are listed from the module tree. Nothing else changes mode: BatchNorm,
DropPath/stochastic depth and attention-probability dropout inside ``F.scaled_dot_product_attention`` stay
off. The wrap is installed only for the passes, and only calls from the calling thread sample; a lock
serialises concurrent MC-dropout calls. Code that scripts a model (``torch.jit.script``) must not run meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cood.confidence import msp

ODIN_TEMPERATURE = 2.0
ODIN_EPSILON = 1e-5
MC_DROPOUT_PASSES = 30
_DROPOUT_PATCH_LOCK = threading.Lock()


def msp_t2(logits: np.ndarray, temperature: float = ODIN_TEMPERATURE) -> np.ndarray:
    """``logits: (B, C)`` -> ``(B,) float64`` max softmax(z / T): ODIN's cheap control at ε = 0 (T = 2)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return msp(np.asarray(logits, dtype=np.float64) / temperature)


def _std_tensor(std, x: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).flatten()
    if s.numel() != x.shape[1] or not bool((s > 0).all()):
        raise ValueError(f"std must hold {x.shape[1]} positive per-channel values, got {tuple(s.tolist())}")
    return s.view(1, -1, 1, 1)


@contextlib.contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Parameters get ``requires_grad_(False)`` (input gradient only); the flags are restored afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def odin_perturb(model: nn.Module, x: torch.Tensor, std, temperature: float = ODIN_TEMPERATURE,
                 epsilon: float = ODIN_EPSILON) -> torch.Tensor:
    """ODIN's perturbed input ``x' = x − ε · sign(∇_x CE(f(x)/T, ŷ)) / std`` with ŷ = argmax f(x).

    x: (B, 3, S, S) normalised input; std: per-channel normalisation std of the model (so ε is in [0, 1]
    pixel units). Runs with gradients enabled even under an outer ``torch.inference_mode()``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, S, S), got {tuple(x.shape)}")
    if not temperature > 0 or not epsilon >= 0:
        raise ValueError(f"need temperature > 0 and epsilon >= 0, got T={temperature}, epsilon={epsilon}")
    with torch.inference_mode(False), torch.enable_grad(), _frozen_parameters(model):
        x_in = x.detach().clone().requires_grad_(True)
        logits = model(x_in).float()
        predicted = logits.argmax(dim=1)
        # Summed (not averaged) loss: each sample's gradient is its own, whatever the batch size.
        loss = F.cross_entropy(logits / temperature, predicted, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_in)
        step = grad.sign() / _std_tensor(std, x_in)
        return (x_in - epsilon * step).detach()


def odin(model: nn.Module, x: torch.Tensor, std, temperature: float = ODIN_TEMPERATURE,
         epsilon: float = ODIN_EPSILON) -> np.ndarray:
    """ODIN confidence, ``(B,) float64``: max softmax(f(x') / T) on the perturbed input of :func:`odin_perturb`.

    The softmax goes through a float64 log-sum-exp (:func:`msp_t2`), so at ε = 0 it equals ``msp_t2`` of
    the plain logits exactly. The model's parameters never receive gradients.
    """
    perturbed = odin_perturb(model, x, std, temperature, epsilon)
    with torch.no_grad():
        logits = model(perturbed).float().cpu().numpy()
    return msp_t2(logits, temperature)


@dataclass(frozen=True)
class DropoutReport:
    """The dropout that MC dropout sampled in one forward pass.

    modules: (qualified name, p) of ``Dropout*`` modules with p > 0; functional: p of each functional
    ``F.dropout`` call with p > 0 made by eval-mode code (timm heads' ``drop_rate``), in call order.
    """

    modules: tuple[tuple[str, float], ...]
    functional: tuple[float, ...]

    @property
    def count(self) -> int:
        """Number of dropout sites with p > 0."""
        return len(self.modules) + len(self.functional)

    @property
    def p_values(self) -> tuple[float, ...]:
        """p of every active site: modules first, then functional calls."""
        return tuple(p for _, p in self.modules) + self.functional


@contextlib.contextmanager
def _sampling_dropout(model: nn.Module, functional_calls: list[float]) -> Iterator[list[tuple[str, float]]]:
    """Dropout* modules in train mode and every ``F.dropout`` with p > 0 sampling; restores both on exit.

    Only calls from the current thread sample; a lock serialises concurrent MC-dropout calls so that the
    original ``F.dropout`` is always the one restored.
    """
    switched = [(name, m) for name, m in model.named_modules() if type(m).__name__.startswith("Dropout")]
    states = [(m, m.training) for _, m in switched]
    with _DROPOUT_PATCH_LOCK:
        original = F.dropout
        owner = threading.get_ident()

        def sampling(tensor, p=0.5, training=True, inplace=False):
            if threading.get_ident() != owner:
                return original(tensor, p, training, inplace)
            if p > 0 and not training:
                functional_calls.append(float(p))
            return original(tensor, p, p > 0 or training, inplace)

        for _, m in switched:
            m.train(True)
        F.dropout = sampling
        try:
            yield [(name, float(getattr(m, "p", 0.0))) for name, m in switched if getattr(m, "p", 0.0) > 0]
        finally:
            F.dropout = original
            for m, state in states:
                m.train(state)


def mc_dropout(model: nn.Module, x: torch.Tensor, passes: int = MC_DROPOUT_PASSES,
               seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MC dropout: ``passes`` stochastic forward passes of an eval-mode model with dropout sampling.

    x: (B, 3, S, S) normalised input. Returns ``mean_probs: (B, C) float64`` (mean of the passes' softmaxes;
    the prediction is its argmax) and ``neg_entropy: (B,) float64`` = Σ p log p of the mean (≤ 0, the
    smallest positive float inside the log). ``seed`` makes the masks reproducible without touching the
    global RNG. Raises ValueError when no dropout with p > 0 is active (MC dropout would equal plain
    entropy); :func:`dropout_report` tells which sites are sampled.
    """
    if passes < 2:
        raise ValueError(f"passes must be >= 2, got {passes}")
    devices = [x.device] if x.device.type == "cuda" else []
    with contextlib.ExitStack() as stack:
        if seed is not None:
            stack.enter_context(torch.random.fork_rng(devices=devices))
            torch.manual_seed(seed)
        functional: list[float] = []
        modules = stack.enter_context(_sampling_dropout(model, functional))
        stack.enter_context(torch.no_grad())
        total = None
        for index in range(passes):
            probs = torch.softmax(model(x).double(), dim=1)
            total = probs if total is None else total + probs
            if index == 0 and not modules and not functional:
                raise ValueError(
                    f"MC dropout needs active dropout with p > 0, but {type(model).__name__} has none "
                    "(no Dropout module with p > 0 and no functional dropout with p > 0 in its forward pass)"
                )
    mean_probs = (total / passes).cpu().numpy()
    tiny = np.finfo(np.float64).tiny
    neg_entropy = (mean_probs * np.log(np.maximum(mean_probs, tiny))).sum(axis=1)
    return mean_probs, neg_entropy


def dropout_report(model: nn.Module, x: torch.Tensor) -> DropoutReport:
    """Which dropout sites MC dropout samples for this model: one forward pass on ``x`` (a small batch)."""
    functional: list[float] = []
    with _sampling_dropout(model, functional) as modules, torch.no_grad():
        model(x)
    return DropoutReport(tuple(modules), tuple(functional))


# Per-sample output columns this module produces (architecture.md §5); ``mcd_pred`` is MC dropout's prediction.
MODEL_CONFIDENCES = ("odin", "msp_t2", "mcd_neg_entropy", "mcd_pred")


def compute(model: nn.Module, x: torch.Tensor, std, names: tuple[str, ...], *, logits: np.ndarray | None = None,
            mc_passes: int = MC_DROPOUT_PASSES, seed: int | None = None) -> dict[str, np.ndarray]:
    """The requested model-in-the-loop columns for one batch: ``{name: (B,) array}`` (float64; int64 for
    ``mcd_pred``). x: (B, 3, S, S) normalised input; std: the model's per-channel normalisation std;
    logits: the batch's plain ``(B, C)`` logits when already computed (for ``msp_t2``); seed: MC-dropout masks
    (vary it per batch, e.g. base seed + batch index, and record it).
    """
    unknown = [n for n in names if n not in MODEL_CONFIDENCES]
    if unknown:
        raise ValueError(f"unknown model confidence(s) {unknown}; choose from {', '.join(MODEL_CONFIDENCES)}")
    columns: dict[str, np.ndarray] = {}
    if "odin" in names:
        columns["odin"] = odin(model, x, std)
    if "msp_t2" in names:
        if logits is None:
            with torch.no_grad():
                logits = model(x).float().cpu().numpy()
        columns["msp_t2"] = msp_t2(logits)
    if "mcd_neg_entropy" in names or "mcd_pred" in names:
        mean_probs, neg_entropy = mc_dropout(model, x, mc_passes, seed)
        if "mcd_neg_entropy" in names:
            columns["mcd_neg_entropy"] = neg_entropy
        if "mcd_pred" in names:
            columns["mcd_pred"] = mean_probs.argmax(axis=1).astype(np.int64)
    return columns
