"""The spec grammar: spec strings -> :class:`~pipelines.zoo.registry.Resolution` (no weights loaded).

``SOURCE:NAME`` hands NAME to the registered source (:func:`~pipelines.zoo.registry.lookup_source`);
``file:<path>`` reads one spec per line ('#' comments, blank lines ignored; nested ``file:`` lists allowed,
relative to the including list's folder; a cycle of lists is refused). Errors are one-line UserErrors; an
error inside a list is prefixed with ``<list path>:<line number>:``.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import UserError
from pipelines.zoo.registry import FILE_SOURCE, ModelSpec, Resolution, SkippedWeights, lookup_source


def _read_spec_list(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read model list {path}: {exc.strerror or exc}") from exc
    lines = [(number, line.split("#", 1)[0].strip()) for number, line in enumerate(text.splitlines(), start=1)]
    return [(number, line) for number, line in lines if line]


def _resolve_file(name: str, base: Path, stack: tuple[Path, ...]) -> Resolution:
    path = (base / Path(name).expanduser()).resolve()
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack[stack.index(path) :], path))
        raise UserError(f"model list files include each other in a cycle: {chain}")
    specs: list[ModelSpec] = []
    skipped: list[SkippedWeights] = []
    for number, line in _read_spec_list(path):
        try:
            part = _resolve_spec(line, path.parent, (*stack, path))
        except UserError as exc:
            message = str(exc)
            if not message.startswith(f"{path}:"):
                message = f"{path}:{number}: {message}"
            raise UserError(message) from exc
        specs.extend(part.specs)
        skipped.extend(part.skipped)
    return Resolution(specs, skipped)


def _resolve_spec(spec: str, base: Path, stack: tuple[Path, ...]) -> Resolution:
    source, sep, name = spec.strip().partition(":")
    if not sep or not name:
        raise UserError(f"model spec {spec!r} must look like SOURCE:NAME, e.g. timm:resnet50.a1_in1k")
    if source == FILE_SOURCE:
        return _resolve_file(name, base, stack)
    return lookup_source(source, spec).resolve(spec.strip(), name)


def resolve_with_skipped(spec: str) -> Resolution:
    """Resolve one spec string without loading weights, keeping the weights a wildcard left out and why.

    Raises UserError for an unknown source or model (naming close matches) and for an exact name whose
    weights are not an ImageNet-1k classifier (saying why). ``file:`` paths are relative to the current
    directory; ``file:`` entries inside a list are relative to that list's folder.
    """
    return _resolve_spec(spec, Path.cwd(), ())


def resolve(spec: str) -> list[ModelSpec]:
    """Resolve one spec string into model specs without loading any weights (wildcard skips dropped)."""
    return resolve_with_skipped(spec).specs


def resolve_all(specs: list[str]) -> list[ModelSpec]:
    """Resolve several specs, dropping duplicate model ids (first occurrence wins, order kept)."""
    seen: dict[str, ModelSpec] = {}
    for spec in specs:
        for ms in resolve(spec):
            seen.setdefault(ms.model_id, ms)
    return list(seen.values())
