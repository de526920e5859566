"""results.report: the curve maths against brute force, every section present with real images, Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_results import ID_DATASET, OOD_DATASET, synthetic_frames, write_synthetic_outputs

from pipelines.cli import main
from results.report import (
    build_report,
    expected_calibration_error,
    reliability_bins,
    risk_coverage,
)
from results.store import Store, StoreError, database_path, ingest_frames

SECTIONS = (
    "leaderboard-selective",
    "leaderboard-cood",
    "leaderboard-hsc",
    "hsc-calibration",
    "risk-coverage",
    "hrc",
    "cood-degradation",
    "reliability",
    "cood-reference",
    "provenance",
)
IMAGE_SECTIONS = ("risk-coverage", "hrc", "cood-degradation", "reliability", "cood-reference")
CHROMIUM = "/usr/bin/chromium"


def test_risk_coverage_hand_case_and_brute_force() -> None:
    coverage, risk = risk_coverage(np.array([0.6, 0.9, 0.7, 0.8]), np.array([False, True, True, False]))
    # accepted in order 0.9 (ok), 0.8 (wrong), 0.7 (ok), 0.6 (wrong)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.5, 1 / 3, 0.5])
    rng = np.random.default_rng(0)
    conf = rng.random(200)
    correct = rng.random(200) < conf
    _, risk = risk_coverage(conf, correct)
    order = sorted(range(200), key=lambda i: -conf[i])
    for k in (1, 7, 50, 199, 200):
        assert risk[k - 1] == pytest.approx(sum(not correct[i] for i in order[:k]) / k)


def test_reliability_bins_match_a_loop_over_bins() -> None:
    rng = np.random.default_rng(1)
    conf = np.concatenate([rng.random(500), [0.0, 1.0, 1 / 15, 2 / 15]])
    correct = rng.random(conf.size) < conf
    mean_conf, accuracy, counts = reliability_bins(conf, correct, bins=15)
    for j in range(15):
        inside = (conf > j / 15) & (conf <= (j + 1) / 15)
        assert counts[j] == inside.sum()
        if inside.any():
            assert mean_conf[j] == pytest.approx(conf[inside].mean())
            assert accuracy[j] == pytest.approx(correct[inside].mean())
    assert counts.sum() == conf.size - 1  # confidence 0 falls in no bin
    # sanity identity (selective.md): when every bin is over-confident, ECE = mean conf − accuracy
    conf = rng.uniform(0.05, 1.0, 400)
    correct = np.zeros(400, dtype=bool)
    ece = expected_calibration_error(*reliability_bins(conf, correct), n=conf.size)
    assert ece == pytest.approx(conf.mean() - correct.mean())


def test_bad_curve_inputs() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        risk_coverage(np.ones(3), np.ones(2, dtype=bool))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        reliability_bins(np.array([2.0]), np.array([True]))


def _sections(document: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', document, flags=re.S))


def _images(body: str) -> list[Image.Image]:
    encoded = re.findall(r'src="data:image/png;base64,([^"]+)"', body)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in encoded]


@pytest.fixture(scope="module")
def full_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    frames = synthetic_frames(n_models=3, seed=5)
    models = frames["models"]["model_id"].to_list()
    write_synthetic_outputs(root, models, n_samples=1500, num_classes=8)
    # OOD outputs too: their labels are OOD class indices, so the ID-only plots must leave them out
    write_synthetic_outputs(root, models, n_samples=500, num_classes=8, seed=9, dataset=OOD_DATASET)
    ingest_frames(database_path(root), frames)
    return root


@pytest.fixture(scope="module")
def full_report(full_workspace: Path) -> Path:
    return build_report(full_workspace)


def test_report_has_every_section_with_non_empty_images(full_report: Path, full_workspace: Path) -> None:
    assert full_report == full_workspace / "reports" / "report.html"
    document = full_report.read_text()
    sections = _sections(document)
    assert list(sections) == list(SECTIONS)
    for anchor in SECTIONS:
        assert 'class="empty"' not in sections[anchor], anchor
    for anchor in IMAGE_SECTIONS:
        images = _images(sections[anchor])
        assert images, anchor
        for image in images:
            pixels = np.asarray(image.convert("L"), dtype=np.float64)
            assert image.width >= 300 and image.height >= 250
            assert pixels.std() > 5 and (pixels < 128).mean() > 0.005, anchor  # drawn, not blank
    # leaderboards list the models, provenance lists runs, models and tasks
    for model in synthetic_frames(n_models=3, seed=5)["models"]["model_id"]:
        assert model in sections["leaderboard-selective"] and model in sections["provenance"]
    assert "run-synthetic-0001" in sections["provenance"]
    assert f"in-distribution dataset(s): {ID_DATASET}." in sections["risk-coverage"]
    assert not re.search(r'(src|href)="(https?:)?//', document), "the report must not fetch anything"


def test_report_on_an_empty_database_says_so(tmp_path: Path) -> None:
    ingest_frames(database_path(tmp_path), {})
    document = build_report(tmp_path, tmp_path / "empty.html").read_text()
    sections = _sections(document)
    assert list(sections) == list(SECTIONS)
    for anchor in SECTIONS:
        assert 'class="empty"' in sections[anchor], anchor
    assert "no HSC results in this database" in sections["leaderboard-hsc"]
    assert "no HSC results in this database" in sections["hrc"]
    assert "no C-OOD results in this database" in sections["cood-degradation"]
    assert "no per-sample outputs" in sections["risk-coverage"]


def test_report_command_and_errors(full_workspace: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "sub" / "r.html"
    assert main(["report", "-w", str(full_workspace), "-o", str(target), "--max-models", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    reliability = _sections(target.read_text())["reliability"]
    assert reliability.count("<img") == 1 and _images(reliability)[0].width < 900  # 2 panels, not 3
    assert main(["report", "-w", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: workspace not found")
    with pytest.raises(StoreError, match="no results database"):
        build_report(tmp_path)


def test_report_without_outputs_still_draws_table_based_plots(tmp_path: Path) -> None:
    ingest_frames(database_path(tmp_path), synthetic_frames(n_models=2, seed=2))
    with Store.open(database_path(tmp_path), read_only=True) as store:
        assert store.table("samples").height == 0
    sections = _sections(build_report(tmp_path).read_text())
    assert "no per-sample outputs" in sections["risk-coverage"]
    assert _images(sections["cood-degradation"]) and _images(sections["hrc"])


def test_report_renders_in_headless_chromium(full_report: Path, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    shot = tmp_path / "shot.png"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        full_report.resolve().as_uri(),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERR_FILE_NOT_FOUND" not in proc.stderr and "Failed to load resource" not in proc.stderr
    assert shot.is_file() and shot.stat().st_size > 20_000
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 10  # text, tables and plots, not a blank page
