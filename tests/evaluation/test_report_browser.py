"""The HTML report in a real browser: Debian's Chromium, driven by Playwright.

By default the test trains two tiny models (full and hashed tables), evaluates them with
``recsys-eval``'s code path and opens their comparison report. ``RECSYS_REPORT=<report.html>``
checks an existing report instead (for example the demo's), and ``RECSYS_SCREENSHOT=<file.png>``
keeps the screenshot there (``docs/report.png`` was taken this way from ``make demo``'s report).
"""

import json
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
LAPTOP = {"width": 1366, "height": 768}
# headline cells (data-key) whose text is a plain number, and where the JSON holds it
NUMERIC_KEYS = ("auc", "logloss", "normalized_entropy", "calibration", "ece")


def browser_or_skip():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: scripts/setup.sh installs Debian's chromium where apt works")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (scripts/setup.sh installs it)")
    return sync_playwright


@pytest.fixture(scope="module")
def report_html(tiny_dataset, tmp_path_factory) -> Path:
    if os.environ.get("RECSYS_REPORT"):
        return Path(os.environ["RECSYS_REPORT"]).resolve()
    from recsys.evaluation.offline import EvalJobConfig, evaluate_checkpoint
    from recsys.evaluation.report_html import build_report
    from recsys.data.config import DataConfig
    from recsys.models.config import DLRMConfig
    from recsys.train.config import TrainerConfig, TrainJobConfig
    from recsys.train.loop import train

    root = tmp_path_factory.mktemp("browser_report")
    for name, embedding in (("full", {"method": "full"}), ("hash", {"method": "hash", "compression": 4.0})):
        job = TrainJobConfig(
            data=DataConfig(path=str(tiny_dataset), batch_size=256, eval_batch_size=1024, prefetch=2),
            model=DLRMConfig(8, [16, 8], [16, 1]),
            embedding=embedding,
            trainer=TrainerConfig(progress=False, tensorboard=False, log_every_steps=4, epochs=2),
        )
        train(job, root / name)
        evaluate_checkpoint(EvalJobConfig(checkpoint=str(root / name), html_report=False), root / name / "eval")
    build_report([str(root / "full"), str(root / "hash")], root / "report.html")
    return root / "report.html"


@pytest.mark.slow
def test_report_renders_in_chromium_with_every_plot_and_the_json_numbers(report_html, tmp_path):
    sync_playwright = browser_or_skip()
    numbers = json.loads(report_html.with_suffix(".json").read_text())
    screenshot = Path(os.environ.get("RECSYS_SCREENSHOT") or tmp_path / "report.png")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport=LAPTOP)
            errors = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            failed_requests = []
            page.on("requestfailed", lambda r: failed_requests.append(r.url))
            page.goto(report_html.as_uri(), wait_until="load")
            assert errors == [] and failed_requests == []

            plots = page.eval_on_selector_all(
                "figure.plot",
                """figs => figs.map(f => {
                    const svg = f.querySelector('svg');
                    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
                    return {kind: f.dataset.plot, width: box.width, height: box.height,
                            marks: svg ? svg.querySelectorAll('path, use, rect').length : 0};
                })""",
            )
            kinds = {p["kind"] for p in plots}
            expected = {"roc-pr", "reliability", "frequency", "memory", "training"}
            if numbers["comparison"]:
                expected.add("pareto")
            assert expected <= kinds, kinds
            for p in plots:
                assert p["width"] > 200 and p["height"] > 100 and p["marks"] > 10, p

            cells = page.eval_on_selector_all(
                "td[data-run][data-key]", "tds => tds.map(td => [td.dataset.run, td.dataset.key, td.textContent])"
            )
            runs = {r["name"]: r for r in numbers["runs"]}
            checked = 0
            for run, key, text in cells:
                if key in NUMERIC_KEYS:
                    expected_value = runs[run]["metrics"][key]
                    decimals = len(text.split(".")[1])
                    assert float(text) == pytest.approx(expected_value, abs=0.51 * 10**-decimals), (run, key, text)
                    checked += 1
            assert checked >= len(runs) * len(NUMERIC_KEYS)

            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= LAPTOP["width"], "the page scrolls sideways at laptop width"
            page.screenshot(path=str(screenshot), full_page=False)
            assert screenshot.stat().st_size > 10_000
            pdf = tmp_path / "report.pdf"
            page.pdf(path=str(pdf), format="A4")  # prints: one run per page
            assert pdf.stat().st_size > 10_000
        finally:
            browser.close()
    print(f"screenshot: {screenshot}")
