"""The studio's run page as a user sees it (headless Chromium, driven as tests/test_studio_browser.py
does): no "null" or "undefined" text, y-axis tick labels that never repeat, one learning-curves panel.
Issue 28 saw "nullnull" under the title, a validation-accuracy axis reading 0.987, 0.988, 0.988, 0.988,
0.989, and the live chart beside the PNG of the same curves."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from danlu.serve.server import BackgroundServer
from danlu.studio.app import create_studio_app
from tests.studio_runs import built, runs_folder
from tests.test_serve_browser import browser  # noqa: F401 - the fixture, shared with serve's page tests
from tests.test_studio_browser import shot, wait


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory):
    """A finished run whose validation accuracy moves in the fourth decimal, and one with problems."""
    runs_folder(tmp_path_factory)
    root = tmp_path_factory.mktemp("page-runs")
    close = shutil.copytree(built("a"), root / "20260101-000000-close-accuracy")
    rows = [{"epoch": i + 1, "train_loss": 0.1 - i * 0.001, "val_loss": 0.05 - i * 0.0005,
             "val_accuracy": 0.98655 + i * 0.0007} for i in range(5)]
    (close / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    torn = shutil.copytree(built("a"), root / "20260101-000001-torn-report")
    (torn / "report.json").write_text("not json")
    return root


@pytest.fixture(scope="module")
def studio(page_runs):
    with BackgroundServer(create_studio_app(page_runs)) as server:
        yield server.url


def visible_words(driver) -> str:
    """The page's text but the resolved recipe's own YAML (where ``null`` is a value, as the file says)."""
    return driver.execute_script("""
        const page = document.body.cloneNode(true);
        for (const pre of page.querySelectorAll("pre#recipe")) pre.remove();
        return page.textContent;""")


def tick_labels(driver) -> dict[str, list[str]]:
    return driver.execute_script("""
        const out = {};
        for (const svg of document.querySelectorAll("svg.chart"))
          out[svg.id] = [...svg.querySelectorAll('text[x="4"]')].map(t => t.textContent);  // the y axis
        return out;""")


@pytest.mark.parametrize("run", ["20260101-000000-close-accuracy", "20260101-000001-torn-report"])
def test_run_page_has_no_null_text_no_repeated_ticks_and_one_curves_panel(studio, browser, run):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(f"{studio}/#/run/{run}")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-loss polyline"))
    wait(browser, lambda d: d.find_elements(By.ID, "recipe"))
    text = visible_words(browser)
    assert not re.search(r"null|undefined|NaN", text), text[:500]  # "done" then "nullnull": no word boundary
    ticks = tick_labels(browser)
    assert "chart-loss" in ticks and "chart-metric" in ticks, ticks
    for chart, labels in ticks.items():
        assert len(labels) >= 3, (chart, labels)
        assert len(labels) == len(set(labels)), (chart, labels)  # no two ticks read the same
        values = [float(x) for x in labels]
        assert values == sorted(values), (chart, labels)
    panels = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "section.card h2")]
    assert sum(bool(re.search(r"learning.curves", p, re.I)) for p in panels) == 1, panels
    shot(browser, f"page-{run}")
