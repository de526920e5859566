"""The options of the per-model analyses (selective, C-OOD, HSC) and their defaults, written once.

:class:`AnalysisOptions` is the one place an analysis default is written: the run configuration
(pipelines.engine.run_config), the command line (``uebench run``, ``uebench cood build``), the demo and the
analyses' own keyword defaults (pipelines.analyses.*) all read :data:`DEFAULTS`. It sits beside
pipelines.errors, below every layer of ``pipelines`` (engine, analyses, run, demo, cli all import it), and
imports only the hsc library default it refers to.
"""

from __future__ import annotations

from dataclasses import dataclass

from hsc.study import DEFAULT_ALPHAS

# κ computed from the stored logits of every model (cood.confidence names); the C-OOD analysis adds the
# model-in-the-loop κ a run asks for (pipelines.engine.run_config).
LOGIT_KAPPAS: tuple[str, ...] = ("msp", "neg_entropy", "max_logit")


@dataclass(frozen=True)
class AnalysisOptions:
    """Every option of the analyses, with its default.

    - ``seed``: the seed of the analyses' random choices: the stratified temperature-scaling split shared by
      the selective and HSC analyses, and the calibration/test splits of the HSC threshold study (a run's
      top-level ``seed``, which also seeds OOD sampling and MC dropout).
    - ``n_fit``: samples in the temperature-scaling fit split (at most N // 10; ImageNet val: 5,000 / 45,000).
    - ``selective_kappas``: κ of the selective-prediction metrics (cood.confidence names, plus the detectors'
      stored ``det_<name>`` columns).
    - ``cood_kappas``: κ of the C-OOD benchmarks (logit κ plus stored model-in-the-loop and detector columns).
    - ``cood_window``: OOD classes per severity level (|Y_ID|: 1,000 for ImageNet-1k).
    - ``cood_levels``: number of severity levels.
    - ``hsc_repetitions``: calibration/test splits of the HSC threshold study.
    - ``hsc_n_cal``: calibration samples of each such split (capped at N // 2: :meth:`calibration_size`).
    - ``hsc_alphas``: target risks α of the threshold study (hsc.study.DEFAULT_ALPHAS).
    """

    seed: int = 0
    n_fit: int = 5000
    selective_kappas: tuple[str, ...] = LOGIT_KAPPAS
    cood_kappas: tuple[str, ...] = LOGIT_KAPPAS
    cood_window: int = 1000
    cood_levels: int = 11
    hsc_repetitions: int = 1000
    hsc_n_cal: int = 5000
    hsc_alphas: tuple[float, ...] = DEFAULT_ALPHAS

    def calibration_size(self, n: int, n_cal: int | None = None) -> int:
        """Calibration samples of an HSC split of ``n`` samples: ``n_cal`` when given, else
        min(``hsc_n_cal``, n // 2)."""
        return min(self.hsc_n_cal, n // 2) if n_cal is None else int(n_cal)


DEFAULTS = AnalysisOptions()
"""The defaults, for keyword defaults and help texts (``DEFAULTS.cood_window``)."""
