"""The packaged WordNet taxonomy snapshot: hand-checked facts, closures vs brute force, rebuild identity."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hsc import taxonomy
from hsc.taxonomy import SNAPSHOT_PATH, Taxonomy, load_taxonomy, snapshot_sha256

REPO = Path(__file__).resolve().parents[1]
DOG, CANINE, DOMESTIC_ANIMAL = "n02084071", "n02083346", "n01317541"
ENTITY, TENCH = "n00001740", "n01440764"


@pytest.fixture(scope="module")
def tax() -> Taxonomy:
    return load_taxonomy()


def brute_ancestors(parents_of, wnid: str) -> set[str]:
    """Proper ancestors by a plain stack walk over the parent relation."""
    seen: set[str] = set()
    stack = list(parents_of(wnid))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(parents_of(node))
    return seen


# ---- hand-checked WordNet 3.0 facts --------------------------------------------------------------
def test_lists_have_the_published_sizes_and_order(tax: Taxonomy) -> None:
    lists = tax.lists
    assert [len(lists[k]) for k in ("imagenet1k", "imagenet21k_goog", "imagenet22k")] == [1000, 21843, 21841]
    assert tax.imagenet1k == sorted(tax.imagenet1k) == lists["imagenet1k"]
    assert tax.imagenet1k[0] == TENCH and tax.imagenet1k[-1] == "n15075141"  # tench ... toilet tissue
    assert lists["imagenet21k_goog"][:3] == ["n00004475", "n00005787", "n00006024"]
    assert len(tax) == 23548


def test_dog_parents_names_and_definition(tax: Taxonomy) -> None:
    assert tax.parents(DOG) == [CANINE, DOMESTIC_ANIMAL]  # data.noun: "@ 02083346 n 0000 @ 01317541 n 0000"
    assert tax.name(DOG) == "dog"
    assert tax.lemmas(DOG) == ["dog", "domestic_dog", "Canis_familiaris"]
    assert tax.definition(DOG).startswith(
        "a member of the genus Canis (probably descended from the common wolf)"
    )
    assert DOG in tax.children(CANINE) and DOG in tax.children(DOMESTIC_ANIMAL)
    assert tax.name("n02110063") == "malamute"  # underscore-free first lemma
    assert tax.name("n02085620") == "Chihuahua"
    assert tax.name("n03000134") == "chainlink fence"  # 'chainlink_fence' -> spaces


def test_instance_hypernyms_are_parents(tax: Taxonomy) -> None:
    # data.noun: "09450163 17 n 02 sun 0 Sun 2 004 @i 09444100 n 0000 ..." (sun is an instance of star)
    assert tax.parents("n09450163") == ["n09444100"] and tax.name("n09444100") == "star"
    assert "n09450163" in tax.descendants(["n09444100"])
    # "11318824 18 n 03 Stoker 1 Bram_Stoker 0 Abraham_Stoker 0 001 @i 10794014 n 0000" (writer)
    assert tax.parents("n11318824") == ["n10794014"] and tax.lemmas("n11318824")[1] == "Bram_Stoker"
    assert ENTITY in tax.ancestors(["n11318824"])


def test_single_root_is_entity(tax: Taxonomy) -> None:
    roots = [w for w in tax.wnids if not tax.parents(w)]
    assert roots == [ENTITY]
    assert tax.name(ENTITY) == "entity"
    assert ENTITY in tax and "n99999999" not in tax and 42 not in tax


def test_snapshot_hash_matches_file(tax: Taxonomy) -> None:
    assert tax.sha256 == snapshot_sha256() == snapshot_sha256(SNAPSHOT_PATH)


def test_load_time_under_half_a_second() -> None:
    """Reading + decompressing + parsing + indexing the snapshot (numpy already imported); cache bypassed."""
    times = []
    for _ in range(3):
        taxonomy._load_cached.cache_clear()
        start = time.perf_counter()
        load_taxonomy()
        times.append(time.perf_counter() - start)
    assert min(times) < 0.5, times


def test_loading_imports_neither_nltk_nor_torch() -> None:
    code = (
        "import sys; from hsc.taxonomy import load_taxonomy; load_taxonomy(); "
        "print(sorted(m for m in ('nltk', 'torch', 'timm') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"


# ---- closures and edges against brute force ------------------------------------------------------
def test_ancestors_and_descendants_match_brute_force_on_real_data(tax: Taxonomy) -> None:
    rng = np.random.default_rng(3)
    sample = [tax.wnids[i] for i in rng.choice(len(tax), size=40, replace=False)] + [DOG, TENCH]
    for wnid in sample:
        expected = brute_ancestors(tax.parents, wnid)
        assert tax.ancestors([wnid]) == expected
        assert tax.descendants([wnid]) == brute_ancestors(tax.children, wnid)
        for ancestor in expected:  # inverse relation
            assert wnid in brute_ancestors(tax.children, ancestor)
    union = set().union(*(brute_ancestors(tax.parents, w) for w in sample))
    assert tax.ancestors(sample) == union


def test_isa_edges_file_order(tax: Taxonomy) -> None:
    leaves = tax.imagenet1k
    edges = tax.isa_edges(leaves)
    reached = set(leaves).union(*(brute_ancestors(tax.parents, w) for w in leaves))
    expected = {(p, c) for c in reached for p in tax.parents(c)}
    assert len(edges) == len(expected) == len(set(edges))
    assert set(edges) == expected
    first_parent: dict[str, str] = {}
    for parent, child in edges:
        first_parent.setdefault(child, parent)
    assert all(first_parent[c] == tax.parents(c)[0] for c in first_parent)
    assert first_parent[DOG] == CANINE
    # the leaves come first, in the given order
    children_in_order = list(dict.fromkeys(c for _, c in edges))
    assert children_in_order[:1000] == leaves
    assert len(set(children_in_order)) == len(reached) - 1  # every reached node except the root has a parent


def synthetic() -> Taxonomy:
    """a   root; b, c under a; d under b and c (multiple inheritance); e instance of d, also under c."""
    wnids = ["n00000001", "n00000002", "n00000003", "n00000004", "n00000005"]
    a, b, c, d = range(4)
    parents = [[], [a], [a], [c, b], [c, d]]  # e: hypernym c, then instance hypernym d
    lemmas = [["a_x"], ["b"], ["c"], ["d"], ["e"]]
    return Taxonomy(wnids, parents, lemmas, ["A", "B", "C", "D", "E"], {"imagenet1k": wnids[3:4]}, "x")


def test_synthetic_closures_and_edges() -> None:
    tax = synthetic()
    a, b, c, d, e = tax.wnids
    assert tax.parents(d) == [c, b] and tax.parents(e) == [c, d]
    assert tax.children(a) == [b, c] and tax.children(c) == [d, e]
    assert tax.ancestors([e]) == {a, b, c, d}
    assert tax.ancestors([d, e]) == {a, b, c, d}
    assert tax.descendants([b]) == {d, e} and tax.descendants([a]) == {b, c, d, e}
    assert tax.name(a) == "a x"
    assert tax.isa_edges([e]) == [(c, e), (d, e), (a, c), (c, d), (b, d), (a, b)]
    with pytest.raises(ValueError, match="duplicates"):
        tax.isa_edges([e, e])


def test_unknown_wnids_raise_value_error(tax: Taxonomy) -> None:
    with pytest.raises(ValueError, match="n99999999"):
        tax.parents("n99999999")
    with pytest.raises(ValueError, match="n99999999"):
        tax.ancestors([DOG, "n99999999"])
    with pytest.raises(ValueError, match="n99999999"):
        tax.isa_edges(["n99999999"])


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_taxonomy(tmp_path / "missing.json.gz")
    plain = tmp_path / "plain.json.gz"
    plain.write_text("not gzip")
    with pytest.raises(ValueError, match="gzip'ed JSON"):
        load_taxonomy(plain)
    other = tmp_path / "other.json.gz"
    other.write_bytes(gzip.compress(b'{"format": "something-else"}'))
    with pytest.raises(ValueError, match="uebench-wordnet-taxonomy v1"):
        load_taxonomy(other)


def test_build_rejects_malformed_lists_before_loading_wordnet(tmp_path: Path) -> None:
    good = {"imagenet1k": [DOG], "imagenet21k_goog": [DOG], "imagenet22k": [DOG]}
    with pytest.raises(ValueError, match="expected wnids like"):
        taxonomy.build_snapshot({**good, "imagenet1k": ["dog"]}, tmp_path / "x.json.gz")
    with pytest.raises(ValueError, match="duplicates"):
        taxonomy.build_snapshot({**good, "imagenet1k": [DOG, DOG]}, tmp_path / "x.json.gz")
    with pytest.raises(ValueError, match="missing"):
        taxonomy.build_snapshot({"imagenet1k": [DOG]}, tmp_path / "x.json.gz")
    assert not (tmp_path / "x.json.gz").exists()


# ---- rebuild from WordNet 3.0 --------------------------------------------------------------------
def wordnet_30_or_skip() -> None:
    try:
        from nltk.corpus import wordnet

        version = wordnet.get_version()
    except LookupError:
        pytest.skip(
            f"WordNet 3.0 not found by nltk (NLTK_DATA={os.environ.get('NLTK_DATA', '<unset>')}); "
            "run scripts/install_wordnet.sh to enable the rebuild test"
        )
    if version != "3.0":
        pytest.skip(f"nltk's WordNet is version {version}, the snapshot is built from 3.0")


def test_rebuild_via_cli_is_byte_identical(tmp_path: Path) -> None:
    wordnet_30_or_skip()
    import typer
    from typer.testing import CliRunner

    import pipelines.cli.taxonomy as cmd_taxonomy

    app = typer.Typer()
    cmd_taxonomy.register(app)
    app.command("noop")(lambda: None)  # a second command keeps the 'taxonomy' group addressable by name
    output = tmp_path / "rebuilt.json.gz"
    result = CliRunner().invoke(app, ["taxonomy", "build", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "23,548 synsets" in result.output
    assert gzip.decompress(output.read_bytes()) == gzip.decompress(SNAPSHOT_PATH.read_bytes())
    assert output.read_bytes() == SNAPSHOT_PATH.read_bytes()


@pytest.mark.filterwarnings("ignore:No WordNet synset found")
def test_build_rejects_a_wnid_missing_from_wordnet(tmp_path: Path) -> None:
    wordnet_30_or_skip()
    lists = {"imagenet1k": [DOG], "imagenet21k_goog": ["n00000001"], "imagenet22k": [DOG]}
    with pytest.raises(ValueError, match=r"n00000001 is not a WordNet 3\.0 noun synset"):
        taxonomy.build_snapshot(lists, tmp_path / "x.json.gz")


def test_timm_lists_are_found_without_importing_timm() -> None:
    code = (
        "import sys; from pipelines.cli.taxonomy import timm_synset_lists; lists = timm_synset_lists(); "
        "print(len(lists['imagenet1k']), len(lists['imagenet21k_goog']), len(lists['imagenet22k']), "
        "sorted(m for m in ('timm', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split(" ", 3) == ["1000", "21843", "21841", "[]\n"]


def test_cli_build_without_wordnet_is_a_user_error(tmp_path: Path) -> None:
    code = (
        "import sys, typer\n"
        "import pipelines.cli.taxonomy as cmd_taxonomy\n"
        "from pipelines.errors import UserError\n"
        "cmd_taxonomy.use_repo_nltk_data = lambda: None  # hide <repo>/.nltk_data\n"
        "app = typer.Typer(); cmd_taxonomy.register(app); app.command('noop')(lambda: None)\n"
        "try:\n"
        f"    app(['taxonomy', 'build', '-o', {str(tmp_path / 'x.json.gz')!r}], standalone_mode=False)\n"
        "except UserError as exc:\n"
        "    print('UserError:', exc)\n"
    )
    empty = tmp_path / "empty_nltk_data"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "NLTK_DATA": str(empty), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    if out.stdout.startswith("wrote "):
        pytest.skip("WordNet is installed in a system-wide nltk_data folder and cannot be hidden")
    assert out.stdout.startswith("UserError: WordNet 3.0 not found by nltk: run scripts/install_wordnet.sh")
    assert "set NLTK_DATA" in out.stdout
    assert not (tmp_path / "x.json.gz").exists()


def test_constructor_rejects_inconsistent_input() -> None:
    wnids = ["n00000001", "n00000002"]
    with pytest.raises(ValueError, match="out-of-range"):
        Taxonomy(wnids, [[], [2]], [["a"], ["b"]], ["A", "B"], {}, "x")
    with pytest.raises(ValueError, match="duplicates"):
        Taxonomy(wnids[:1] * 2, [[], [0]], [["a"], ["b"]], ["A", "B"], {}, "x")
    with pytest.raises(ValueError, match="unknown"):
        Taxonomy(wnids, [[], [0]], [["a"], ["b"]], ["A", "B"], {"imagenet1k": ["n00000003"]}, "x")
    assert ["n00000001"] not in Taxonomy(wnids, [[], [0]], [["a"], ["b"]], ["A", "B"], {}, "x")
