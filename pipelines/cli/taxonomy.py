"""``uebench taxonomy build``: regenerate the packaged WordNet taxonomy snapshot (hsc/data) via nltk."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from pipelines.errors import UserError

# snapshot list name -> file in timm/data/_info
TIMM_SYNSET_FILES = {
    "imagenet1k": "imagenet_synsets.txt",
    "imagenet21k_goog": "imagenet21k_goog_synsets.txt",
    "imagenet22k": "imagenet22k_synsets.txt",
}


def timm_info_dir() -> Path:
    """timm's ``data/_info`` folder, located without importing timm (or torch)."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("timm is not installed: it ships the ImageNet synset lists the snapshot is built from")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "data" / "_info"
        if folder.is_dir():
            return folder
    raise UserError(f"timm's synset lists not found under {list(spec.submodule_search_locations)}")


def timm_synset_lists() -> dict[str, list[str]]:
    """The three ImageNet class lists that timm ships, keyed by snapshot list name, in file order."""
    folder = timm_info_dir()
    lists = {}
    for name, filename in TIMM_SYNSET_FILES.items():
        path = folder / filename
        if not path.is_file():
            raise UserError(f"timm synset list missing: {path}")
        lists[name] = path.read_text().split()
    return lists


def use_repo_nltk_data() -> None:
    """Let nltk also search ``<repo>/.nltk_data`` (where scripts/install_wordnet.sh puts WordNet)."""
    folder = Path(__file__).resolve().parents[2] / ".nltk_data"
    if folder.is_dir():
        import nltk

        if str(folder) not in nltk.data.path:
            nltk.data.path.append(str(folder))


def build(
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        help="Where to write the snapshot (default: the packaged hsc/data/wordnet_taxonomy_v1.json.gz).",
    ),
) -> None:
    """Rebuild the WordNet 3.0 taxonomy snapshot of the ImageNet synsets from nltk's WordNet."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hsc import taxonomy

    console = Console(stderr=True)
    lists = timm_synset_lists()
    use_repo_nltk_data()
    target = Path(output) if output is not None else taxonomy.SNAPSHOT_PATH
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("loading WordNet via nltk", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, description="reading synsets", completed=done, total=total)

        try:
            path = taxonomy.build_snapshot(lists, target, progress=report)
        except LookupError:
            raise UserError(
                "WordNet 3.0 not found by nltk: run scripts/install_wordnet.sh (Debian, offline; fills "
                "<repo>/.nltk_data), set NLTK_DATA, or run nltk.download('wordnet')"
            ) from None
    tax = taxonomy.load_taxonomy(path)
    counts = ", ".join(f"{name} {len(values)}" for name, values in tax.lists.items())
    typer.echo(
        f"wrote {path} ({path.stat().st_size:,} bytes, {len(tax):,} synsets; {counts}); "
        f"sha256 {taxonomy.snapshot_sha256(path)}"
    )


def pool(
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        help="Where to write the kept wnids, one per line (default without --exclude: the packaged "
        "cood/data/wordnet_filtered_v1.txt).",
    ),
    exclude: Path = typer.Option(
        None, "--exclude", help="Exclusion file: one 'wnid  # reason' per line, applied after WordNet."
    ),
) -> None:
    """Write the C-OOD class pool: ImageNet-21k (fall11) synsets unrelated in WordNet to ImageNet-1k."""
    from cood import pool as cood_pool

    if output is None and exclude is not None:
        raise UserError("--output is required with --exclude (the packaged list is the WordNet-only pool)")
    target = Path(output) if output is not None else cood_pool.WORDNET_FILTERED_V1_PATH
    result = cood_pool.ood_class_pool(exclude=exclude)
    digest = cood_pool.write_class_list(result.wnids, target)
    counts = ", ".join(f"{key} {value:,}" for key, value in result.counts.items())
    typer.echo(f"wrote {target} ({counts}; variant {result.pool_variant}); sha256 {digest}")


def register(app: typer.Typer) -> None:
    """Add the ``taxonomy`` command group (``taxonomy build``, ``taxonomy pool``) to the uebench CLI."""
    group = typer.Typer(
        help="The packaged WordNet taxonomy snapshot of the ImageNet synsets and the C-OOD class pool.",
        no_args_is_help=True,
    )
    group.command("build")(build)
    group.command("pool")(pool)
    app.add_typer(group, name="taxonomy")
