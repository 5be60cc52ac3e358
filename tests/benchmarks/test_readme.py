"""The README's benchmark figures are what benchmarks/results/*.json hold (benchmarks/readme.py)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_readme_module():
    spec = importlib.util.spec_from_file_location("bench_readme", REPO / "benchmarks" / "readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_figures_match_the_result_json():
    readme = load_readme_module()
    text = (REPO / "README.md").read_text()
    assert readme.render_readme(text) == text, "run: python benchmarks/readme.py"


def test_a_changed_result_changes_the_readme(tmp_path):
    readme = load_readme_module()
    results = tmp_path / "results"
    shutil.copytree(REPO / "benchmarks" / "results", results)
    quality = json.loads((results / "quality.json").read_text())
    quality["auc"] = 0.123456
    (results / "quality.json").write_text(json.dumps(quality))
    text = (REPO / "README.md").read_text()
    rendered = readme.render_readme(text, results)
    assert "test AUC 0.1235" in rendered and rendered != text


def test_a_result_without_its_readme_block_is_an_error():
    readme = load_readme_module()
    with pytest.raises(ValueError, match="no block <!-- generated: pipeline -->"):
        readme.render_readme("# README without blocks\n")
