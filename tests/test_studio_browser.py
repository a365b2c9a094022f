"""The studio in headless Chromium: list (sort, filter, damaged rows), open a run, live curves, try it (draw
and test samples), compare, a study. Runs whenever chromium is installed; under CI=true it must run.
DANLU_SCREENSHOT_DIR=folder keeps a screenshot of each page."""

from __future__ import annotations

import json
import os

import pytest

from danlu.runs.store import metrics_history
from danlu.serve.server import BackgroundServer
from danlu.studio.app import create_studio_app
from tests.studio_runs import built, runs_folder
from tests.test_serve_browser import browser  # noqa: F401 - the fixture, shared with serve's page tests


def wait(driver, condition, timeout: float = 30):
    """Until ``condition`` holds; an element replaced by a re-render meanwhile is looked up again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = runs_folder(tmp_path_factory)
    with BackgroundServer(create_studio_app(root)) as server:
        yield server.url


def shot(driver, name: str) -> None:
    folder = os.environ.get("DANLU_SCREENSHOT_DIR")
    if folder:
        driver.save_screenshot(os.path.join(folder, f"studio-{name}.png"))


def rows(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")


def test_list_sorts_filters_and_marks_damaged_runs(studio, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(studio + "/")
    wait(browser, lambda d: len(rows(d)) == 6)
    damaged = [r.get_attribute("data-run") for r in rows(browser) if "damaged" in r.get_attribute("class")]
    assert sorted(damaged) == ["20000101-000000-broken", "20000101-000001-half", "20000101-000002-torn"]
    browser.find_element(By.CSS_SELECTOR, "th[data-col=accuracy]").click()  # best first
    cells = [r.find_elements(By.TAG_NAME, "td")[5].text for r in rows(browser)]
    numbers = [float(c) for c in cells if c != "–"]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) >= 2
    browser.find_element(By.CSS_SELECTOR, "th[data-col=accuracy]").click()  # and the other way round
    numbers = [float(c) for c in (r.find_elements(By.TAG_NAME, "td")[5].text for r in rows(browser)) if c != "–"]
    assert numbers == sorted(numbers)
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("damaged")
    wait(browser, lambda d: len(rows(d)) == 3)
    assert browser.find_element(By.ID, "count").text == "3 of 6 runs"
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("")
    wait(browser, lambda d: len(rows(d)) == 6)
    shot(browser, "list")


def test_open_a_run_then_try_it_by_drawing_and_by_sample(studio, browser):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    a = built("a")
    browser.get(f"{studio}/#/run/{a.name}")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-loss polyline"))
    assert browser.find_element(By.ID, "run-status").text == "done"
    assert "accuracy" in browser.find_element(By.ID, "metrics").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#per-class tr")) == 11
    assert "digits-mlp" in browser.find_element(By.ID, "recipe").text
    wait(browser, lambda d: all(d.execute_script("return arguments[0].naturalWidth", img) > 0
                                for img in d.find_elements(By.CSS_SELECTOR, "img.figure")))
    assert len(browser.find_elements(By.CSS_SELECTOR, "img.figure")) == 2  # the curves PNG: drawn live instead
    canvas = wait(browser, lambda d: d.find_element(By.ID, "draw-canvas"))
    browser.execute_script("arguments[0].scrollIntoView()", canvas)
    ActionChains(browser).move_to_element_with_offset(canvas, -20, -60).click_and_hold() \
        .move_by_offset(30, 0).move_by_offset(-5, 60).move_by_offset(-10, 60).release().perform()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#try-results .bar")) == 3)
    assert "your drawing" in browser.find_element(By.ID, "try-results").text
    sample = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#samples button.sample"))
    assert len(sample) == 6
    sample[0].click()
    wait(browser, lambda d: "test sample 1" in d.find_element(By.ID, "try-results").text
         and len(d.find_elements(By.CSS_SELECTOR, "#try-results .bar")) == 3)
    shot(browser, "run")


def test_try_it_explains_with_the_why_toggle(studio, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    a = built("a")
    browser.get(f"{studio}/#/run/{a.name}")
    samples = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#samples button.sample"))
    assert not browser.find_element(By.ID, "try-explanation").is_displayed()  # off until asked
    samples[0].click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#try-results .bar")) == 3)
    assert not browser.find_elements(By.CSS_SELECTOR, "#try-explain-view img.heatmap")
    toggle = browser.find_element(By.ID, "try-explain-toggle")
    browser.execute_script("arguments[0].scrollIntoView()", toggle)
    toggle.click()  # on: explains the input on screen
    heat = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#try-explain-view img.heatmap"))[0]
    assert heat.get_attribute("src").startswith("data:image/png;base64,")
    wait(browser, lambda d: d.execute_script("return arguments[0].naturalWidth", heat) >= 200)  # it decoded
    predicted = browser.find_element(By.CSS_SELECTOR, "#try-results .bar .label").text
    caption = browser.find_element(By.CSS_SELECTOR, "#try-explain-view figcaption").text
    assert caption.startswith("Integrated gradients") and f"explaining {predicted} " in caption
    assert "completeness error" in caption
    assert browser.find_element(By.ID, "try-explain-status").text.startswith("Integrated gradients:")
    samples = browser.find_elements(By.CSS_SELECTOR, "#samples button.sample")
    samples[1].click()  # a new input while on: explained too, the old heat map gone
    wait(browser, lambda d: "test sample 2" in d.find_element(By.ID, "try-results").text)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#try-explain-view img.heatmap"))
    predicted = browser.find_element(By.CSS_SELECTOR, "#try-results .bar .label").text
    wait(browser, lambda d: f"explaining {predicted} " in d.find_element(By.CSS_SELECTOR,
                                                                          "#try-explain-view figcaption").text)
    shot(browser, "why")
    browser.find_element(By.ID, "try-explain-toggle").click()  # off: the view goes
    wait(browser, lambda d: not d.find_element(By.ID, "try-explanation").is_displayed())
    assert not browser.find_elements(By.CSS_SELECTOR, "#try-explain-view img.heatmap")


def test_a_training_run_updates_while_it_trains(studio, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    live = built("live")
    browser.get(f"{studio}/#/run/{live.name}")
    points = lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart-loss circle"))  # noqa: E731
    wait(browser, lambda d: "live: training" in d.find_element(By.ID, "live").text)
    before = points(browser)
    have = len(metrics_history(live))
    extra = dict(metrics_history(built("b"))[have])
    with (live / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(extra) + "\n")
    wait(browser, lambda d: points(d) > before)  # the next poll draws the new epoch
    (live / "status.json").write_text(json.dumps({"status": "training", "epoch": have + 1, "epochs": 5}))
    wait(browser, lambda d: f"epoch {have + 1}/5" in d.find_element(By.ID, "live").text)


def test_compare_two_runs(studio, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    a, b = built("a"), built("b")
    browser.get(studio + "/")
    wait(browser, lambda d: len(rows(d)) == 6)
    for name in (a.name, b.name):
        browser.find_element(By.CSS_SELECTOR, f"input.pick[value='{name}']").click()
    browser.find_element(By.ID, "compare").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#deltas tr"))
    diff = browser.find_element(By.ID, "recipe-diff").text
    assert "train.lr" in diff and "0.003" in diff and "0.01" in diff
    assert browser.find_elements(By.CSS_SELECTOR, "#deltas .delta")
    series = {p.get_attribute("data-series") for p in browser.find_elements(By.CSS_SELECTOR, "#chart-loss polyline")}
    assert len(series) == 4  # train and validation loss of each run
    shot(browser, "compare")


def test_a_study(studio, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(studio + "/#/studies")
    link = wait(browser, lambda d: d.find_element(By.LINK_TEXT, "digits-study"))
    link.click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#trials tr")) == 3)
    assert browser.find_element(By.ID, "best").text.startswith("best: trial")
    wait(browser, lambda d: any(d.execute_script("return arguments[0].naturalWidth", img) > 0
                                for img in d.find_elements(By.CSS_SELECTOR, "img.figure")))
    shot(browser, "study")
