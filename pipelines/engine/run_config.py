"""``uebench run`` configuration: a TOML file naming models, datasets, workspace, Ray resources and analyses.

Example (every key but ``models`` and one dataset is optional)::

    workspace = "runs/zoo-2026"
    models = ["timm:resnet50.a1_in1k", "timm:vit_*", "file:more-models.txt"]
    analyses = ["selective", "hsc", "cood"]       # default: every analysis that applies
    model_metadata = "regimes.toml"               # optional: override the training-regime rules (docs/models.md)

    [datasets.imagenet-val]                       # ImageNet-1k val (one ID set per run), folder-per-wnid layout
    kind = "id"
    root = "/data/imagenet/val"
    # ... or the flat layout: root = "/data/ILSVRC2012_img_val" and ground_truth = "/data/LOC_val_solution.csv"

    [datasets.imagenet21k]                        # OOD: any <wnid>/<image> set, restricted to the C-OOD pool
    kind = "ood"
    root = "/data/fall11_whole.tar"               # a folder, per-synset tars, a tar of tars, shards, s3://...
    format = "tars"                               # folder | tar | tars | wds | parquet (default: detected)
    per_class = 200                               # images sampled per class (classes with fewer are dropped)
    n_estimation = 150                            # of which estimate class severity; the rest are the test set

    seed = 7                # OOD sampling, MC dropout and the analyses' splits

    [cood]                  # [cood], [hsc] and seed: analysis options (defaults: pipelines.analysis_options)
    window = 1000           # classes per severity level: |Y_ID| (the 1000 ImageNet-1k classes here)
    levels = 6              # severity levels

    [hsc]
    repetitions = 200       # calibration/test splits of the threshold study

    [ray]
    address = "auto"        # an existing cluster; omit for a local instance
    num_cpus = 16           # local instance only
    cpus_per_task = 4       # CPUs of one model actor (and its torch threads)
    gpus_per_task = 0.5     # GPUs of one model actor (fractional packs small models); default 1 with GPUs
    model_actors = 8        # actors per model stage (default: GPUs / gpus_per_task, or spare CPUs)
    decode_cpus = 1         # CPUs of one decode task
    model_resources = { gpu_node = 1 }   # custom resources every model actor needs (pin model work to some nodes)

    [inference]
    batch_size = 128        # images per block (decode task, model call, MC-dropout seed unit)
    shards = 64             # shards per dataset (classes hash to shards; fixed by configuration, not by data)
    decode_budget_mib = 1024   # object-store MiB the pipeline may hold (decoded crops and outputs in flight)
    models_per_actor = 0    # models one actor keeps resident (0: every model of a preprocessing signature)
    max_image_pixels = 89478485   # larger images are bad files (decompression bombs)
    amp = true              # bf16 autocast on CUDA; logits stored in fp32
    channels_last = true
    model_confidences = ["odin", "mcd_neg_entropy"]   # model-in-the-loop κ (extra passes; see docs/models.md)
    mc_passes = 30
    drop_rate = 0.2         # timm models: classifier dropout to build with, so MC dropout has something to sample
    ood_logits = false      # full OOD logits too (fp32: ≈9 GB per model for the whole pool); κ columns are always kept

    [datasets.imagenet-train]                     # role fit: ImageNet-1k labelled images the detectors are fitted on
    kind = "fit"                                  # (never evaluated; must share no file with the evaluated sets)
    root = "/data/imagenet/train"

    [detectors]             # feature-space OOD detectors (docs/detectors.md), each one more κ column det_<name>
    names = ["mahalanobis", "knn", "vim"]
    fit = "imagenet-train"  # the dataset of kind "fit"
    fit_per_class = 100     # seeded sample of this many images per class (default: every image)
    seed = 0                # that sample's seed (default: the run's seed)
    feature_budget_mib = 1024   # most fit-set feature MiB held at once (one model's n_fit × D float32)
    params = { knn = { k = 50 } }   # replace a detector's paper defaults (docs/detectors.md)
    keep_features = false   # true: also store every evaluated image's features as float16 (workspace features/)
    feature_storage_gib = 64    # refuse the run when those kept features would need more (checked before it)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.analysis_options import DEFAULTS, LOGIT_KAPPAS, AnalysisOptions
from pipelines.data.archives import FORMATS
from pipelines.data.preprocess import DEFAULT_MAX_PIXELS
from pipelines.engine.detectors import DEFAULT_FEATURE_BUDGET_BYTES, DetectorSettings
from pipelines.engine.identity import DEFAULT_SHARDS
from pipelines.engine.inference import (
    DEFAULT_CONFIDENCES,
    DEFAULT_FEATURE_STORAGE_BYTES,
    InferenceOptions,
    detector_column,
)
from pipelines.engine.stream import EngineSettings
from pipelines.errors import UserError
from results.model_metadata import Overrides, load_overrides

KNOWN_KEYS = {
    "workspace", "models", "datasets", "ray", "inference", "analyses", "seed", "cood", "hsc", "model_metadata",
    "detectors",
}
RAY_KEYS = {
    "address", "num_cpus", "num_gpus", "cpus_per_task", "gpus_per_task", "model_actors", "decode_cpus",
    "model_resources",
}
INFERENCE_KEYS = {
    "batch_size", "shards", "amp", "channels_last", "device", "confidences", "model_confidences", "mc_passes",
    "drop_rate", "ood_logits", "decode_budget_mib", "models_per_actor", "max_image_pixels",
}
REMOVED_KEYS = {
    "shard_size": "[inference] shard_size was replaced by shards (classes hash to a fixed number of shards)",
    "keep_decode_cache": "[inference] keep_decode_cache was removed: crops stream through Ray's object store, "
    "there is no decode cache on disk any more",
}
DATASET_KEYS = {"kind", "root", "ground_truth", "per_class", "n_estimation", "format", "classes"}
COOD_KEYS = {"window", "levels"}
DETECTOR_KEYS = {
    "names", "fit", "fit_per_class", "seed", "feature_budget_mib", "params", "keep_features", "feature_storage_gib",
}
HSC_KEYS = {"repetitions"}


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset: name, kind (id | ood | fit: the detectors' ImageNet-1k fit set, not evaluated), root (a
    folder, an archive, a glob of shards or an ``s3://`` URI),
    optional flat-layout ground-truth file; OOD sets are sampled per class (cood.md §1): ``per_class`` images of
    which ``n_estimation`` estimate class severity. ``format``: one of pipelines.data.archives.FORMATS, None to
    detect it from the root; ``classes``: class list for integer labels of an OOD set (docs/datasets.md)."""

    name: str
    kind: str
    root: Path | str
    ground_truth: Path | None = None
    per_class: int = 200
    n_estimation: int = 150
    format: str | None = None
    classes: Path | None = None


@dataclass(frozen=True)
class RunConfig:
    """A validated ``uebench run`` configuration; ``analysis`` holds the analysis options (``seed``, ``[cood]``,
    ``[hsc]``; the C-OOD κ are the logit κ plus the model-in-the-loop scores the inference computes)."""

    workspace: Path
    models: list[str]
    datasets: list[DatasetConfig]
    analyses: list[str] | None = None
    ray_address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    engine: EngineSettings = field(default_factory=EngineSettings)
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    raw: dict[str, Any] = field(default_factory=dict)
    metadata_overrides: Overrides | None = None  # ``model_metadata`` file, read and checked
    detectors: DetectorSettings | None = None  # ``[detectors]``: feature-space detectors and their fit set

    @property
    def seed(self) -> int:
        """The run's seed (OOD sampling, MC dropout, the analyses' splits)."""
        return self.analysis.seed


def _unknown(where: str, given: dict, known: set[str]) -> None:
    extra = sorted(set(given) - known)
    if extra:
        raise UserError(f"unknown key(s) {', '.join(extra)} in {where}; known: {', '.join(sorted(known))}")


def _typed(where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise UserError(f"{where} must be {what}, got {value!r}")
    if not isinstance(value, kind):
        raise UserError(f"{where} must be {what}, got {value!r}")
    return value


def parse_config(raw: dict[str, Any], base: Path, workspace: Path | None = None) -> RunConfig:
    """Validate a parsed TOML mapping; relative paths resolve against ``base`` (the config's folder)."""
    _unknown("the config", raw, KNOWN_KEYS)
    models = raw.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise UserError("the config needs `models = [\"timm:resnet50.a1_in1k\", ...]` (a non-empty list of specs)")
    tables = raw.get("datasets")
    if not isinstance(tables, dict) or not tables:
        raise UserError("the config needs at least one [datasets.<name>] table with kind and root")
    datasets = []
    for name, table in tables.items():
        where = f"[datasets.{name}]"
        _typed(where, table, dict, "a table")
        _unknown(where, table, DATASET_KEYS)
        kind = table.get("kind")
        if kind not in ("id", "ood", "fit"):
            raise UserError(f"{where} kind must be \"id\", \"ood\" or \"fit\", got {kind!r}")
        if "root" not in table:
            raise UserError(f"{where} needs root = \"/path/to/images\"")
        truth = table.get("ground_truth")
        given = _typed(f"{where} root", table["root"], str, "a path or URI")
        root = given if "://" in given else (base / given).expanduser()
        fmt = table.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise UserError(f"{where} format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        classes = table.get("classes")
        classes_path = (base / _typed(f"{where} classes", classes, str, "a path")) if classes is not None else None
        if truth is not None and (fmt not in (None, "folder") or "://" in given):
            raise UserError(f"{where} ground_truth is for a local flat folder of images, not format {fmt or given!r}")
        truth_path = (base / _typed(f"{where} ground_truth", truth, str, "a path")) if truth is not None else None
        per_class = _typed(f"{where} per_class", table.get("per_class", DatasetConfig.per_class), int,
                           "a positive integer")
        n_estimation = _typed(f"{where} n_estimation", table.get("n_estimation", DatasetConfig.n_estimation), int,
                              "a positive integer")
        if not 0 < n_estimation < per_class:
            raise UserError(f"{where} needs 0 < n_estimation < per_class, got {n_estimation} and {per_class}")
        datasets.append(DatasetConfig(name, kind, root, truth_path, per_class, n_estimation, fmt, classes_path))
    for kind in ("id", "ood", "fit"):
        named = [d.name for d in datasets if d.kind == kind]
        if len(named) > 1:
            raise UserError(
                f"a run takes one {kind} dataset, got {len(named)} ({', '.join(named)}); run one config per {kind} "
                "set into separate workspaces (results are keyed by model, not by dataset)"
            )
    ray = raw.get("ray", {})
    _typed("[ray]", ray, dict, "a table")
    _unknown("[ray]", ray, RAY_KEYS)
    inference = raw.get("inference", {})
    _typed("[inference]", inference, dict, "a table")
    for key, why in REMOVED_KEYS.items():
        if key in inference:
            raise UserError(why)
    _unknown("[inference]", inference, INFERENCE_KEYS)
    batch_size = _typed("[inference] batch_size", inference.get("batch_size", 32), int, "a positive integer")
    shards = _typed("[inference] shards", inference.get("shards", DEFAULT_SHARDS), int, "a positive integer")
    budget = _typed("[inference] decode_budget_mib", inference.get("decode_budget_mib", 1024), int, "MiB ≥ 64")
    per_actor = _typed("[inference] models_per_actor", inference.get("models_per_actor", 0), int, "an integer ≥ 0")
    max_pixels = _typed(
        "[inference] max_image_pixels", inference.get("max_image_pixels", DEFAULT_MAX_PIXELS), int, "pixels ≥ 1"
    )
    cpus_per_task = _typed("[ray] cpus_per_task", ray.get("cpus_per_task", 1), int, "a positive integer")
    gpus_per_task = float(_typed("[ray] gpus_per_task", ray.get("gpus_per_task", 0), (int, float), "a number ≥ 0"))
    model_actors = ray.get("model_actors")
    if model_actors is not None:
        _typed("[ray] model_actors", model_actors, int, "a positive integer")
    decode_cpus = float(_typed("[ray] decode_cpus", ray.get("decode_cpus", 1), (int, float), "a number > 0"))
    resources = _typed("[ray] model_resources", ray.get("model_resources", {}), dict, "a table of name = amount")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in resources.values()):
        raise UserError(f"[ray] model_resources must map resource names to positive amounts, got {resources!r}")
    if batch_size < 1 or shards < 1 or cpus_per_task < 1 or gpus_per_task < 0 or (model_actors or 1) < 1:
        raise UserError("batch_size, shards, cpus_per_task and model_actors must be ≥ 1 and gpus_per_task ≥ 0")
    if budget < 64 or per_actor < 0 or max_pixels < 1 or decode_cpus <= 0:
        raise UserError("need decode_budget_mib ≥ 64, models_per_actor ≥ 0, max_image_pixels ≥ 1, decode_cpus > 0")
    device = inference.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"[inference] device must be auto, cpu or cuda, got {device!r}")
    confidences = tuple(inference.get("confidences", DEFAULT_CONFIDENCES))
    from cood.confidence import REGISTRY

    unknown_kappa = [c for c in confidences if c not in REGISTRY]
    if unknown_kappa:
        raise UserError(f"[inference] unknown confidences {unknown_kappa}; known: {', '.join(sorted(REGISTRY))}")
    from pipelines.engine.model_confidence import MODEL_CONFIDENCES

    model_confidences = _typed(
        "[inference] model_confidences", inference.get("model_confidences", []), list, "a list of names"
    )
    unknown_model = [c for c in model_confidences if c not in MODEL_CONFIDENCES]
    if unknown_model:
        raise UserError(
            f"[inference] unknown model_confidences {unknown_model}; known: {', '.join(MODEL_CONFIDENCES)}"
        )
    mc_passes = _typed("[inference] mc_passes", inference.get("mc_passes", 30), int, "a positive integer")
    if mc_passes < 1:
        raise UserError(f"[inference] mc_passes must be a positive integer, got {mc_passes}")
    drop_rate = inference.get("drop_rate")
    if drop_rate is not None:
        drop_rate = float(_typed("[inference] drop_rate", drop_rate, (int, float), "a number in [0, 1)"))
        if not 0 <= drop_rate < 1:
            raise UserError(f"[inference] drop_rate must be in [0, 1), got {drop_rate}")
    analyses = raw.get("analyses")
    if analyses is not None and not (isinstance(analyses, list) and all(isinstance(a, str) for a in analyses)):
        raise UserError("analyses must be a list of names, e.g. [\"selective\", \"hsc\", \"cood\"]")
    seed = _typed("seed", raw.get("seed", DEFAULTS.seed), int, "an integer")
    cood = _typed("[cood]", raw.get("cood", {}), dict, "a table")
    _unknown("[cood]", cood, COOD_KEYS)
    window = _typed("[cood] window", cood.get("window", DEFAULTS.cood_window), int, "a positive integer")
    levels = _typed("[cood] levels", cood.get("levels", DEFAULTS.cood_levels), int, "an integer ≥ 2")
    hsc = _typed("[hsc]", raw.get("hsc", {}), dict, "a table")
    _unknown("[hsc]", hsc, HSC_KEYS)
    repetitions = _typed(
        "[hsc] repetitions", hsc.get("repetitions", DEFAULTS.hsc_repetitions), int, "a positive integer"
    )
    if window < 1 or levels < 2 or repetitions < 1:
        raise UserError(f"need [cood] window ≥ 1, levels ≥ 2 and [hsc] repetitions ≥ 1, got {window}, {levels}, "
                        f"{repetitions}")
    detectors = _detectors(raw, datasets, seed)
    detector_columns = tuple(detector_column(name) for name in (detectors.names if detectors else ()))
    keep_features, feature_storage = _kept_features(raw)
    chosen = workspace or (base / str(raw.get("workspace", "uebench-workspace")))
    overrides = None
    if "model_metadata" in raw:
        where = _typed("model_metadata", raw["model_metadata"], str, "a path to a .toml or .csv file")
        try:
            overrides = load_overrides(base / Path(where).expanduser())
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return RunConfig(
        workspace=Path(chosen).expanduser(),
        models=models,
        datasets=datasets,
        analyses=analyses,
        ray_address=ray.get("address"),
        num_cpus=ray.get("num_cpus"),
        num_gpus=ray.get("num_gpus"),
        inference=InferenceOptions(
            batch_size=batch_size, device=device, amp=bool(inference.get("amp", False)),
            channels_last=bool(inference.get("channels_last", False)), threads=cpus_per_task,
            confidences=confidences, model_confidences=tuple(model_confidences), mc_passes=mc_passes,
            drop_rate=drop_rate, seed=seed,
            ood_logits=_typed("[inference] ood_logits", inference.get("ood_logits", False), bool, "true or false"),
            max_image_pixels=max_pixels, detectors=detectors.names if detectors else (),
            keep_features=keep_features, feature_storage_bytes=feature_storage,
        ),
        engine=EngineSettings(
            num_shards=shards, budget_bytes=budget << 20, model_actors=model_actors, models_per_actor=per_actor,
            cpus_per_actor=float(cpus_per_task), gpus_per_actor=gpus_per_task, decode_cpus=decode_cpus,
            actor_resources={str(k): float(v) for k, v in resources.items()},
        ),
        analysis=AnalysisOptions(
            seed=seed, cood_window=window, cood_levels=levels, hsc_repetitions=repetitions,
            # the C-OOD κ: the logit κ plus every model-in-the-loop score (mcd_pred is a prediction, not a score)
            cood_kappas=(*LOGIT_KAPPAS, *(name for name in model_confidences if name != "mcd_pred"),
                         *detector_columns),
            # the selective κ: the logit κ plus the detectors (a model-in-the-loop κ ranks another prediction
            # or input: ODIN's perturbed input, MC dropout's mean prediction, so it is not a κ of these logits)
            selective_kappas=(*LOGIT_KAPPAS, *detector_columns),
        ),
        raw=raw,
        metadata_overrides=overrides,
        detectors=detectors,
    )


def _detectors(raw: dict[str, Any], datasets: list[DatasetConfig], seed: int) -> DetectorSettings | None:
    """``[detectors]`` validated against the datasets: known names, a ``fit`` naming the dataset of kind fit."""
    fit_sets = [d.name for d in datasets if d.kind == "fit"]
    if "detectors" not in raw:
        if fit_sets:
            raise UserError(f"dataset {fit_sets[0]!r} has kind \"fit\" but there is no [detectors] table to fit")
        return None
    table = _typed("[detectors]", raw["detectors"], dict, "a table")
    _unknown("[detectors]", table, DETECTOR_KEYS)
    from cood.detectors import DETECTORS

    names = table.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UserError("[detectors] needs names = [\"mahalanobis\", ...] (a non-empty list of detector names)")
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or len(set(names)) != len(names):
        raise UserError(f"[detectors] names must be distinct registered detectors, got {names}; "
                        f"known: {', '.join(DETECTORS)}")
    fit = table.get("fit")
    if not isinstance(fit, str) or fit not in fit_sets:
        raise UserError(f"[detectors] fit must name the dataset of kind \"fit\" (a [datasets.<name>] table with "
                        f"kind = \"fit\"), got {fit!r}")
    per_class = table.get("fit_per_class")
    if per_class is not None and (_typed("[detectors] fit_per_class", per_class, int, "a positive integer") < 1):
        raise UserError(f"[detectors] fit_per_class must be a positive integer, got {per_class}")
    fit_seed = _typed("[detectors] seed", table.get("seed", seed), int, "an integer")
    budget = _typed("[detectors] feature_budget_mib", table.get("feature_budget_mib",
                    DEFAULT_FEATURE_BUDGET_BYTES >> 20), int, "a positive integer (MiB)")
    if budget < 1:
        raise UserError(f"[detectors] feature_budget_mib must be a positive integer, got {budget}")
    params = _typed("[detectors] params", table.get("params", {}), dict, "a table of detector = { parameter = value }")
    for name, given in params.items():
        _typed(f"[detectors] params.{name}", given, dict, "a table of parameter = value")
        if name not in names:
            raise UserError(f"[detectors] params.{name}: {name!r} is not in names")
        _unknown(f"[detectors] params.{name}", given, set(DETECTORS[name].defaults))
    return DetectorSettings(tuple(names), fit, per_class, fit_seed, budget << 20, params)


def _kept_features(raw: dict[str, Any]) -> tuple[bool, int]:
    """``[detectors] keep_features`` (default false) and ``feature_storage_gib`` (default 64) as (flag, bytes);
    read only once ``[detectors]`` itself was validated (:func:`_detectors`)."""
    table = raw.get("detectors", {})
    keep = _typed("[detectors] keep_features", table.get("keep_features", False), bool, "true or false")
    gib = _typed("[detectors] feature_storage_gib", table.get("feature_storage_gib",
                 DEFAULT_FEATURE_STORAGE_BYTES / 2**30), (int, float), "a number of GiB > 0")
    if not gib > 0:
        raise UserError(f"[detectors] feature_storage_gib must be a number of GiB > 0, got {gib}")
    return keep, int(gib * 2**30)


def load_raw(path: Path) -> dict[str, Any]:
    """The parsed TOML mapping of a config file; one-line UserError when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None


def load_config(path: Path, workspace: Path | None = None) -> RunConfig:
    """Read and validate a TOML run configuration; one-line UserError for every mistake."""
    return parse_config(load_raw(path), Path(path).resolve().parent, workspace)
