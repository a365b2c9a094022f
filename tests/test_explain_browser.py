"""The web page's "Why?" toggle in headless Chromium: a heat map for an image, coloured tokens for a text,
signed feature bars for a table row; integrated gradients (and their completeness) for a model without convolutions.

Runs whenever chromium and chromedriver are installed; under CI=true it must run (a missing browser fails).
"""

from __future__ import annotations

import os

import pytest

from danlu.serve.app import create_app
from danlu.serve.server import BackgroundServer
from tests import test_serve_browser
from tests.explain_runs import digit_png_bytes, tiny_runs
from tests.test_serve_browser import HAVE_BROWSER, wait

chromium = test_serve_browser.browser  # the page tests' headless Chromium fixture, shared

if not HAVE_BROWSER and os.environ.get("CI") != "true":
    pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory)


def _toggle_on(driver) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "explain-toggle")
    if not box.is_selected():
        box.click()


def test_an_image_shows_its_heat_map_and_the_toggle_hides_it(runs, chromium, tmp_path):
    from selenium.webdriver.common.by import By

    digit = tmp_path / "zero.png"
    digit.write_bytes(digit_png_bytes())
    with BackgroundServer(create_app(runs.cnn)) as server:
        chromium.get(server.url + "/")
        wait(chromium, lambda d: d.find_element(By.ID, "model-name").text == "digits-mlp")
        assert not chromium.find_element(By.ID, "explanation").is_displayed()  # off until asked
        _toggle_on(chromium)
        chromium.find_element(By.ID, "file").send_keys(str(digit))
        wait(chromium, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .bar")) == 3)
        heat = wait(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, "#explain-view img.heatmap"))[0]
        assert heat.get_attribute("src").startswith("data:image/png;base64,")
        wait(chromium, lambda d: d.execute_script("return arguments[0].naturalWidth", heat) >= 200)  # it decoded
        predicted = chromium.find_element(By.CSS_SELECTOR, "#results .bar .label").text
        caption = chromium.find_element(By.CSS_SELECTOR, "#explain-view figcaption").text
        assert caption.startswith("Guided Grad-CAM") and f"explaining {predicted} " in caption
        chromium.find_element(By.ID, "explain-toggle").click()  # off: the view goes
        wait(chromium, lambda d: not d.find_element(By.ID, "explanation").is_displayed())
        chromium.find_element(By.ID, "explain-toggle").click()  # on again: explains the image on screen
        wait(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, "#explain-view img.heatmap"))
        shot = os.environ.get("DANLU_SCREENSHOT")
        if shot:
            chromium.save_screenshot(shot.replace(".png", "-explain.png"))


def test_a_text_shows_coloured_tokens(runs, chromium):
    from selenium.webdriver.common.by import By

    with BackgroundServer(create_app(runs.text)) as server:
        chromium.get(server.url + "/")
        wait(chromium, lambda d: d.find_element(By.ID, "text-input").is_displayed())
        _toggle_on(chromium)
        chromium.find_element(By.ID, "text").send_keys("这家酒店很好")
        chromium.find_element(By.CSS_SELECTOR, "#text-input button[type=submit]").click()
        tokens = wait(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, "#explain-view .tokens .token"))
        assert "".join(t.text for t in tokens) == "这家酒店很好"
        scores = [float(t.get_attribute("data-score")) for t in tokens]
        colours = {t.value_of_css_property("background-color") for t in tokens}
        assert any(s != 0 for s in scores) and len(colours) > 1  # shaded by score, not one flat colour


def test_a_table_row_shows_signed_feature_bars(runs, chromium):
    from selenium.webdriver.common.by import By

    with BackgroundServer(create_app(runs.table)) as server:
        chromium.get(server.url + "/")
        wait(chromium, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#features input")) == 30)
        _toggle_on(chromium)
        first = chromium.find_elements(By.CSS_SELECTOR, "#features input")[0]
        first.send_keys("30")  # far from the training mean: that column must show
        chromium.find_element(By.CSS_SELECTOR, "#tabular-input button[type=submit]").click()
        bars = wait(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, "#explain-view .attribution"))
        assert len(bars) == 12  # the 12 strongest of 30
        names = [b.find_element(By.CLASS_NAME, "name").text for b in bars]
        assert first.get_attribute("data-feature") == names[0]  # the one moved column leads
        assert all(b.get_attribute("class").split()[1] in ("for", "against") for b in bars)


def test_an_mlp_image_is_explained_with_integrated_gradients(runs, chromium, tmp_path):
    from selenium.webdriver.common.by import By

    digit = tmp_path / "zero.png"
    digit.write_bytes(digit_png_bytes())
    with BackgroundServer(create_app(runs.mlp, max_body_mb=10)) as server:
        chromium.get(server.url + "/")
        wait(chromium, lambda d: d.find_element(By.ID, "model-name").text == "digits-mlp")
        _toggle_on(chromium)
        chromium.find_element(By.ID, "file").send_keys(str(digit))
        wait(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, "#explain-view img.heatmap"))
        caption = chromium.find_element(By.CSS_SELECTOR, "#explain-view figcaption").text
        assert caption.startswith("Integrated gradients") and "completeness error" in caption  # an MLP: IG
