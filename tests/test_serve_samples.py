"""`danlu serve`'s page: test-set samples one click away and the draw-a-digit canvas (headless Chromium),
and GET /v1/samples, whose samples predict as the run recorded them."""

from __future__ import annotations

from fastapi.testclient import TestClient
from safetensors.torch import load_file

from danlu.serve.app import create_app
from danlu.serve.server import BackgroundServer
from tests.test_serve_browser import browser, run, wait  # noqa: F401 - fixtures shared with the page tests


def test_samples_route_round_trips(run):  # noqa: F811
    with TestClient(create_app(run), base_url="http://127.0.0.1") as c:
        samples = c.get("/v1/samples").json()["samples"]
        assert len(samples) == 6 and samples[0]["input"].startswith("data:image/png;base64,")
        preds = c.post("/v1/predict", json={"inputs": [s["input"] for s in samples], "top_k": 1}).json()
        classes = c.get("/v1/model").json()["classes"]
    expected = load_file(str(run / "parity.safetensors"))["outputs"][:6].argmax(1).tolist()
    assert [p["top"][0]["label"] for p in preds["predictions"]] == [classes[i] for i in expected]


def test_page_offers_samples_and_a_canvas(run, browser):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    with BackgroundServer(create_app(run)) as server:
        browser.get(server.url + "/")
        buttons = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#samples button.sample"), 60)
        assert len(buttons) == 6
        buttons[2].click()
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .bar")) == 3)
        assert browser.find_element(By.ID, "file-name").text == "test sample 3.png"
        canvas = browser.find_element(By.ID, "draw-canvas")
        browser.execute_script("arguments[0].scrollIntoView()", canvas)
        ActionChains(browser).move_to_element_with_offset(canvas, 0, -50).click_and_hold() \
            .move_by_offset(0, 50).move_by_offset(0, 40).release().perform()
        wait(browser, lambda d: d.find_element(By.ID, "file-name").text == "drawing.png"
             and len(d.find_elements(By.CSS_SELECTOR, "#results .bar")) == 3)
