"""The C-OOD class pool: the 18,838 figure, independent closure checks, reasons, exclusion files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import cood
from cood import pool as pool_module
from cood.pool import (
    WORDNET_FILTERED_V1_PATH,
    WORDNET_FILTERED_V1_SHA256,
    OODPool,
    class_list_sha256,
    ood_class_pool,
    wordnet_filtered_v1,
    write_class_list,
)
from hsc.taxonomy import Taxonomy, load_taxonomy

DOCS = Path(__file__).resolve().parents[1] / "docs" / "taxonomy.md"


@pytest.fixture(scope="module")
def default_pool() -> OODPool:
    return ood_class_pool()


def upward_closure(parents_of, wnid: str, memo: dict[str, frozenset[str]]) -> frozenset[str]:
    """Proper ancestors via an explicit stack and a memo table (independent of the vectorised closure)."""
    if wnid in memo:
        return memo[wnid]
    stack = [wnid]
    while stack:
        node = stack[-1]
        missing = [p for p in parents_of(node) if p not in memo]
        if missing:
            stack.extend(missing)
            continue
        stack.pop()
        result: set[str] = set()
        for p in parents_of(node):
            result.add(p)
            result |= memo[p]
        memo[node] = frozenset(result)
    return memo[wnid]


# ---- real data ---------------------------------------------------------------------------------------------
def test_default_pool_keeps_18838_of_21843(default_pool: OODPool) -> None:
    tax = load_taxonomy()
    assert len(tax.lists["imagenet21k_goog"]) == 21843
    assert len(default_pool) == len(default_pool.wnids) == 18838
    assert len(default_pool.removed) == 21843 - 18838
    assert default_pool.counts == {
        "candidates": 21843, "id": 999, "ancestor": 761, "descendant": 1245, "excluded": 0, "kept": 18838,
    }  # fmt: skip
    assert default_pool.pool_variant == "wordnet_only" and default_pool.exclude_sha256 is None
    candidates = tax.lists["imagenet21k_goog"]
    position = {w: i for i, w in enumerate(candidates)}
    assert [position[w] for w in default_pool.wnids] == sorted(position[w] for w in default_pool.wnids)
    assert set(default_pool.wnids) | set(default_pool.removed) == set(candidates)


def test_no_kept_synset_is_related_to_an_id_synset(default_pool: OODPool) -> None:
    tax = load_taxonomy()
    memo: dict[str, frozenset[str]] = {}
    ids = set(tax.imagenet1k)
    id_ancestors = set().union(*(upward_closure(tax.parents, y, memo) for y in ids))
    for wnid in default_pool.wnids:
        assert wnid not in ids
        assert wnid not in id_ancestors  # not a hypernym of an ID class
        assert not upward_closure(tax.parents, wnid, memo) & ids  # not a hyponym of an ID class
    # and every removed candidate is related, with the first related ID synset (ID order) as its witness
    rank = {y: r for r, y in enumerate(tax.imagenet1k)}
    for wnid, reason in default_pool.removed.items():
        if reason == "is an ImageNet-1k class":
            assert wnid in ids
            continue
        kind, witness = reason.rsplit(" of ", 1)
        if kind == "ancestor":
            below = [y for y in ids if wnid in upward_closure(tax.parents, y, memo)]
            assert witness == min(below, key=rank.__getitem__)
        else:
            assert kind == "descendant" and wnid not in id_ancestors
            above = upward_closure(tax.parents, wnid, memo) & ids
            assert witness == min(above, key=rank.__getitem__)


def test_known_removals(default_pool: OODPool) -> None:
    assert default_pool.removed["n02084071"] == "ancestor of n02085620"  # dog, above Chihuahua
    assert default_pool.removed["n00004475"] == "ancestor of n01440764"  # organism, above tench
    assert default_pool.removed["n01440764"] == "is an ImageNet-1k class"  # tench
    assert default_pool.removed["n01494757"] == "descendant of n01494475"  # a kind of hammerhead shark


def test_packaged_list_and_hash(default_pool: OODPool) -> None:
    data = WORDNET_FILTERED_V1_PATH.read_bytes()
    assert hashlib.sha256(data).hexdigest() == WORDNET_FILTERED_V1_SHA256 == default_pool.sha256
    assert default_pool.version == default_pool.sha256
    assert wordnet_filtered_v1() == default_pool.wnids
    sidecar = WORDNET_FILTERED_V1_PATH.with_name(WORDNET_FILTERED_V1_PATH.name + ".sha256").read_text()
    assert sidecar == f"{WORDNET_FILTERED_V1_SHA256}  wordnet_filtered_v1.txt\n"
    assert WORDNET_FILTERED_V1_SHA256 in DOCS.read_text()
    assert cood.ood_class_pool is ood_class_pool


def test_class_list_hash_and_writer(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "list.txt"
    digest = write_class_list(["n00000001", "n00000002"], path)
    assert path.read_text() == "n00000001\nn00000002\n"
    assert (
        digest == hashlib.sha256(b"n00000001\nn00000002\n").hexdigest() == class_list_sha256(["n00000001", "n00000002"])
    )
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left behind


def test_packaged_list_tamper_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "wordnet_filtered_v1.txt"
    copy.write_bytes(WORDNET_FILTERED_V1_PATH.read_bytes()[:-10])
    monkeypatch.setattr(pool_module, "WORDNET_FILTERED_V1_PATH", copy)
    with pytest.raises(ValueError, match="expected SHA-256"):
        wordnet_filtered_v1()


# ---- exclusion files ---------------------------------------------------------------------------------------
def test_exclusion_file(tmp_path: Path, default_pool: OODPool) -> None:
    kept = default_pool.wnids
    path = tmp_path / "exclude.txt"
    path.write_text(
        "# visually ambiguous classes\n"
        "\n"
        f"{kept[0]}  # first kept class\n"
        f"   {kept[5]}\t#  sixth kept class  \n"
        "n02084071  # dog: already removed by WordNet\n"
    )
    pool = ood_class_pool(exclude=path)
    assert pool.wnids == [w for i, w in enumerate(kept) if i not in (0, 5)]
    assert pool.removed[kept[0]] == "excluded: first kept class"
    assert pool.removed[kept[5]] == "excluded: sixth kept class"
    assert pool.removed["n02084071"] == "ancestor of n02085620"  # the WordNet reason wins
    assert pool.counts["excluded"] == 2 and pool.counts["kept"] == 18836
    assert pool.pool_variant == "wordnet_excluded"
    assert pool.exclude_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pool.sha256 == class_list_sha256(pool.wnids) != default_pool.sha256


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("n99999999  # not a candidate", r"line 2: unknown wnid n99999999 \(not one of the 21843 candidate"),
        ("n03942813", r"line 2: expected 'wnid  # reason', found 'n03942813'"),
        ("dog  # a word", r"line 2: expected a wnid like n03942813, found 'dog'"),
        ("n03942813  #", r"line 2: expected 'wnid  # reason'"),
    ],
)
def test_bad_exclusion_lines(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "exclude.txt"
    path.write_text(f"# header\n{line}\n")
    with pytest.raises(ValueError, match=message) as info:
        ood_class_pool(exclude=path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_exclusion_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="exclusion file not found"):
        ood_class_pool(exclude=tmp_path / "nope.txt")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="id_wnids: expected synsets of the WordNet snapshot"):
        ood_class_pool(id_wnids=["n99999999"])
    with pytest.raises(ValueError, match="candidates: expected distinct"):
        ood_class_pool(candidates=["n02084071", "n02084071"])
    with pytest.raises(ValueError, match="id_wnids: expected at least one"):
        ood_class_pool(id_wnids=[])


# ---- synthetic WordNet vs brute force ----------------------------------------------------------------------
def random_wordnet(rng: np.random.Generator, size: int) -> tuple[list[str], list[list[int]], list[list[int]]]:
    """A random DAG in topological order: node i > 0 gets 1-3 hypernyms and 0-1 instance hypernyms among
    nodes < i (multiple inheritance, and synsets that are both kinds and instances)."""
    wnids = [f"n{10_000_000 + i:08d}" for i in range(size)]
    hypernyms: list[list[int]] = [[]]
    instance_of: list[list[int]] = [[]]
    for i in range(1, size):
        k = int(rng.integers(1, min(3, i) + 1))
        hypernyms.append(rng.choice(i, size=k, replace=False).tolist())
        extra = [int(rng.integers(0, i))] if rng.random() < 0.3 else []
        instance_of.append([p for p in extra if p not in hypernyms[-1]])
    return wnids, hypernyms, instance_of


def brute_pool(wnids, hypernyms, instance_of, id_idx, cand_idx) -> tuple[list[int], dict[int, str]]:
    """Oracle: per-node ancestor sets by recursion over hypernyms ∪ instance hypernyms (nodes are in
    topological order), then the three removal rules applied literally."""
    ancestors: list[set[int]] = []
    for i in range(len(wnids)):
        direct = hypernyms[i] + instance_of[i]
        ancestors.append(set(direct).union(*(ancestors[p] for p in direct)))
    kept, removed = [], {}
    for c in cand_idx:
        above = [y for y in id_idx if c in ancestors[y]]
        below = [y for y in id_idx if y in ancestors[c]]
        if c in id_idx:
            removed[c] = "is an ID class"
        elif above:
            removed[c] = f"ancestor of {wnids[above[0]]}"
        elif below:
            removed[c] = f"descendant of {wnids[below[0]]}"
        else:
            kept.append(c)
    return kept, removed


@pytest.mark.parametrize("seed", range(6))
def test_synthetic_wordnet_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = 60
    wnids, hypernyms, instance_of = random_wordnet(rng, size)
    parents = [h + s for h, s in zip(hypernyms, instance_of, strict=True)]
    tax = Taxonomy(
        wnids,
        parents,
        [[w] for w in wnids],
        wnids,
        {"imagenet1k": [], "imagenet21k_goog": wnids},
        "synthetic",
    )
    id_idx = rng.choice(size, size=4, replace=False).tolist()
    cand_idx = rng.permutation(size)[: size - 10].tolist()
    pool = ood_class_pool(id_wnids=[wnids[i] for i in id_idx], candidates=[wnids[i] for i in cand_idx], taxonomy=tax)
    kept, removed = brute_pool(wnids, hypernyms, instance_of, id_idx, cand_idx)
    assert pool.wnids == [wnids[c] for c in kept]
    assert pool.removed == {wnids[c]: reason for c, reason in removed.items()}
    assert 0 < len(kept) < len(cand_idx)  # the case is not degenerate


def test_synthetic_instance_hypernym_path_only() -> None:
    """x is related to the ID class only through an instance hypernym; y only through a second parent."""
    wnids = ["n00000001", "n00000002", "n00000003", "n00000004", "n00000005", "n00000006"]
    # 0 root; 1 ID class; 2 instance of 1 (hypernym 0); 3 under 0 and (second parent) 2; 4 under 0; 5 under 4
    parents = [[], [0], [0, 1], [0, 2], [0], [4]]
    tax = Taxonomy(wnids, parents, [[w] for w in wnids], wnids, {"imagenet1k": [wnids[1]]}, "s")
    pool = ood_class_pool(id_wnids=[wnids[1]], candidates=wnids, taxonomy=tax)
    assert pool.wnids == [wnids[4], wnids[5]]
    assert pool.removed == {
        wnids[0]: f"ancestor of {wnids[1]}",
        wnids[1]: "is an ID class",
        wnids[2]: f"descendant of {wnids[1]}",
        wnids[3]: f"descendant of {wnids[1]}",
    }


def test_cli_pool_command(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    import pipelines.cli.taxonomy as cmd_taxonomy
    from pipelines.errors import UserError

    app = typer.Typer()
    cmd_taxonomy.register(app)
    app.command("noop")(lambda: None)
    output = tmp_path / "pool.txt"
    result = CliRunner().invoke(app, ["taxonomy", "pool", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_bytes() == WORDNET_FILTERED_V1_PATH.read_bytes()
    assert f"kept 18,838; variant wordnet_only); sha256 {WORDNET_FILTERED_V1_SHA256}" in result.output
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(f"{wordnet_filtered_v1()[0]}  # test\n")
    result = CliRunner().invoke(app, ["taxonomy", "pool", "--exclude", str(exclude)])
    assert isinstance(result.exception, UserError) and "--output is required" in str(result.exception)
    result = CliRunner().invoke(app, ["taxonomy", "pool", "--exclude", str(exclude), "-o", str(output)])
    assert result.exit_code == 0 and len(output.read_text().split()) == 18837
