"""The web page at / in headless Chromium (Selenium): upload an image, see bars; with a key, the page asks for it.

Runs whenever chromium and chromedriver are installed; under CI=true it must run (a missing browser fails).
Set DANLU_SCREENSHOT=path.png to keep a screenshot of the page with its predictions.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from danlu.serve.app import create_app
from danlu.serve.server import BackgroundServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HAVE_BROWSER = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()

if not HAVE_BROWSER and os.environ.get("CI") != "true":
    pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from danlu.api import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))
        return train("digits-mlp", ["train.epochs=1"], runs_dir=tmp_path_factory.mktemp("runs"), progress=False).run


@pytest.fixture(scope="module")
def digit_file(tmp_path_factory) -> Path:
    from sklearn.datasets import load_digits

    path = tmp_path_factory.mktemp("images") / "seven.png"
    digits = load_digits()
    seven = digits.images[list(digits.target).index(7)]
    buf = io.BytesIO()
    Image.fromarray((seven * 15.9).astype(np.uint8)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert HAVE_BROWSER, f"CI needs {CHROMIUM} and {CHROMEDRIVER}"
    driver = headless_chrome(tmp_path_factory.mktemp("chrome"))
    yield driver
    driver.quit()


def headless_chrome(user_dir: Path, *flags: str, browser_log: bool = False):
    """Headless Chromium through chromedriver, quiet (no sync, updates or first-run pages), 1280x1000;
    ``flags`` add to it (a fake microphone), ``browser_log`` keeps the console (CSP violations)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={user_dir}", "--window-size=1280,1000", *flags):
        options.add_argument(flag)
    if browser_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def wait(driver, condition, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def upload_and_read_bars(driver, path: Path) -> list[tuple[str, str]]:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "file").send_keys(str(path))
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .bar")) == 3)
    return [(bar.find_element(By.CLASS_NAME, "label").text, bar.find_element(By.CLASS_NAME, "probability").text)
            for bar in driver.find_elements(By.CSS_SELECTOR, "#results .bar")]


def test_upload_shows_bars_and_the_model_card(run, browser, digit_file):
    from selenium.webdriver.common.by import By

    with BackgroundServer(create_app(run)) as server:
        browser.get(server.url + "/")
        wait(browser, lambda d: d.find_element(By.ID, "model-name").text == "digits-mlp")
        facts = browser.find_element(By.ID, "facts").text
        assert "classification" in facts and "8×8 grayscale image" in facts
        assert "accuracy" in browser.find_element(By.ID, "metrics").text
        assert len(browser.find_elements(By.CSS_SELECTOR, "#classes li")) == 10
        assert not browser.find_element(By.ID, "audio-input").is_displayed()  # the record button is for audio runs

        bars = upload_and_read_bars(browser, digit_file)
        assert all(label in [str(i) for i in range(10)] for label, _ in bars)
        values = [float(p.rstrip("%")) for _, p in bars]
        assert all(p.endswith("%") for _, p in bars) and values == sorted(values, reverse=True)
        assert browser.find_element(By.ID, "file-name").text == "seven.png"
        assert not browser.find_element(By.ID, "error").is_displayed()
        shot = os.environ.get("DANLU_SCREENSHOT")
        if shot:
            browser.save_screenshot(shot)


def test_page_asks_for_the_api_key_once(run, browser, digit_file):
    from selenium.webdriver.common.by import By

    with BackgroundServer(create_app(run, api_key="open-sesame")) as server:
        browser.get(server.url + "/")
        dialog = wait(browser, lambda d: d.find_element(By.ID, "key-dialog"))
        wait(browser, lambda d: dialog.is_displayed())
        browser.find_element(By.ID, "key-input").send_keys("wrong")
        browser.find_element(By.ID, "key-submit").click()
        wait(browser, lambda d: "not accepted" in d.find_element(By.ID, "key-message").text and dialog.is_displayed())
        browser.find_element(By.ID, "key-input").send_keys("open-sesame")
        browser.find_element(By.ID, "key-submit").click()
        wait(browser, lambda d: d.find_element(By.ID, "model-name").text == "digits-mlp")
        assert browser.execute_script("return sessionStorage.getItem('danlu-api-key')") == "open-sesame"
        assert len(upload_and_read_bars(browser, digit_file)) == 3
        assert not dialog.is_displayed()  # asked once: the prediction reused the stored key
        # the key changes while the page is open: the dialog asked during a prediction must still work
        browser.execute_script("sessionStorage.setItem('danlu-api-key', 'stale')")
        browser.find_element(By.ID, "file").send_keys(str(digit_file))
        wait(browser, lambda d: dialog.is_displayed() and "not accepted" in d.find_element(By.ID, "key-message").text)
        assert browser.find_element(By.ID, "key-submit").is_enabled()
        browser.find_element(By.ID, "key-input").send_keys("open-sesame")
        browser.find_element(By.ID, "key-submit").click()
        wait(browser, lambda d: not dialog.is_displayed()  # the input now holds the file twice: 2 answers
             and len(d.find_elements(By.CSS_SELECTOR, "#results .bar")) == 6)
