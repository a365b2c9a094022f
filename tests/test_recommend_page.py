"""The recommendation page of `danlu serve RUN` (static/recommend.js) and its catalogue route GET /v1/items.

A tiny item-kNN run on a generated interaction table with an item table of titles (one of them markup):
TestClient checks the route's bounds, escaping and a query with no match; headless Chromium types a query,
picks two items, presses Recommend and must show what POST /v1/recommend answers for those items.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HAVE_BROWSER = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
MARKUP = "<b>Toy & Story</b>"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from danlu.api import train

    folder = tmp_path_factory.mktemp("rec")
    rng = np.random.default_rng(3)
    rows = ["user,item,rating,timestamp"]
    for u in range(40):
        liked = rng.choice(30, size=12, replace=False)
        rows += [f"u{u},m{i},{rng.integers(1, 6)},{1000 + 10 * t + u}" for t, i in enumerate(liked)]
    (folder / "events.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    titles = ["item,title,year"] + [f"m{i},{MARKUP if i == 7 else f'Film number {i}'},{1990 + i}"
                                    for i in range(30)]
    (folder / "movies.csv").write_text("\n".join(titles) + "\n", encoding="utf-8")
    return train("movielens-itemknn", ["data.name=interactions", f"data.path={folder / 'events.csv'}",
                                       f"recommend.items={folder / 'movies.csv'}"],
                 runs_dir=folder / "runs", progress=False, plots=False).run


def test_catalogue_route_is_bounded_paged_and_escaped(run):
    from fastapi.testclient import TestClient

    from danlu.serve import create_app

    with TestClient(create_app(run, api_key="k"), base_url="http://localhost") as client:
        head = {"X-API-Key": "k"}
        assert client.get("/v1/items?q=film").status_code == 401
        page = client.get("/v1/items?q=FILM number 1&limit=5", headers=head).json()
        assert page["total"] == 11 and len(page["items"]) == 5  # 1, 10..19: case-insensitive substring
        assert page["items"][0] == {"item": "m1", "title": "Film number 1 (1991)"}
        rest = client.get("/v1/items?q=film number 1&limit=5&offset=10", headers=head).json()
        assert len(rest["items"]) == 1 and rest["offset"] == 10
        by_id = client.get("/v1/items?q=m2", headers=head).json()  # ids match too, prefix matches first
        assert by_id["items"][0]["item"] == "m2" and {r["item"] for r in by_id["items"]} == {"m2"} | {
            f"m{i}" for i in range(20, 30)}
        everything = client.get("/v1/items", headers=head).json()
        assert everything["total"] == 30 and len(everything["items"]) == 20  # the default page, never all
        raw = client.get("/v1/items?q=toy", headers=head)
        assert raw.headers["content-type"].startswith("application/json") and "<" not in raw.text
        assert "\\u003cb\\u003eToy \\u0026 Story" in raw.text
        assert raw.json()["items"] == [{"item": "m7", "title": f"{MARKUP} (1997)"}]
        none = client.get("/v1/items?q=no such film", headers=head).json()
        assert none["total"] == 0 and none["items"] == []
        for bad in ("limit=0", "limit=101", "limit=x", "offset=-1", "q=" + "a" * 201, "page=2"):
            answer = client.get(f"/v1/items?{bad}", headers=head)
            assert answer.status_code == 422 and answer.json()["error"], bad
        card = client.get("/v1/model", headers=head).json()
        assert card["kind"] == "recommendation" and card["recipe"] == "movielens-itemknn"
        page = client.get("/")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/static/recommend.js").status_code == 200


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not HAVE_BROWSER:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs {CHROMIUM} and {CHROMEDRIVER}")
        pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)")
    from tests.test_serve_browser import headless_chrome

    driver = headless_chrome(tmp_path_factory.mktemp("chrome"), browser_log=True)  # to see CSP violations
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 20):
    """Until ``condition`` holds; an element redrawn while it is read (a newer search answer) is a retry."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def test_page_picks_items_and_shows_the_servers_recommendations(run, browser):
    import httpx
    from selenium.webdriver.common.by import By

    from danlu.serve import create_app
    from danlu.serve.server import BackgroundServer

    with BackgroundServer(create_app(run)) as server:
        browser.get(server.url + "/")
        wait(browser, lambda d: d.find_element(By.ID, "model-name").text == "movielens-itemknn")
        assert browser.find_element(By.ID, "recommend-input").is_displayed()
        assert not browser.find_element(By.ID, "tabular-input").is_displayed()
        assert browser.find_element(By.ID, "recommend").get_attribute("disabled")  # nothing picked yet
        assert "40 users × 30 items" in browser.find_element(By.ID, "facts").text
        hits = "#item-hits .hit"
        browser.find_element(By.ID, "item-search").send_keys("toy")  # the markup title, shown as text
        wait(browser, lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, hits)] == [f"{MARKUP} (1997)"])
        wait(browser, lambda d: _click(d, hits))
        box = browser.find_element(By.ID, "item-search")
        box.clear()
        box.send_keys("number 2")  # Film number 2, 20..29
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, hits)) == 11)
        wait(browser, lambda d: _click(d, f"{hits}[data-item='m21']"))
        picked = [e.get_attribute("data-item") for e in browser.find_elements(By.CSS_SELECTOR, "#picked li")]
        assert picked == ["m7", "m21"]
        browser.find_element(By.ID, "recommend").click()
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .rec"))
        shown = browser.execute_script(  # read in one go
            "return [...document.querySelectorAll('#results .rec')].map((li) => [li.dataset.item, "
            "li.querySelector('.label').textContent, li.querySelector('.score').textContent, "
            "(li.querySelector('.because') || {}).textContent || null])")
        answer = httpx.post(server.url + "/v1/recommend", json={"items": ["m7", "m21"], "k": 10}, timeout=10).json()
        expected = [[r["item"], r["title"], f"{r['score']:.4f}",
                     f"because you rated {r['because']['title']}" if "because" in r else None]
                    for r in answer["recommendations"]]
        assert shown == expected and len(shown) == 10
        assert not {"m7", "m21"} & {row[0] for row in shown}  # what was picked is not recommended
        assert any(row[3] for row in shown)  # item-kNN says why
        assert not browser.find_element(By.ID, "error").is_displayed()
        if os.environ.get("DANLU_SCREENSHOT"):
            browser.save_screenshot(os.environ["DANLU_SCREENSHOT"])
        logs = [e["message"] for e in browser.get_log("browser")]
        assert not [m for m in logs if "Content Security Policy" in m or "Uncaught" in m], logs
        assert json.dumps(answer)  # the answer was JSON all along


def _click(browser, selector: str) -> bool:
    """Click the element, or report False while the list is being redrawn (a later search answer replaced
    it between finding and clicking), so ``wait`` tries again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        browser.find_element(By.CSS_SELECTOR, selector).click()
        return True
    except (StaleElementReferenceException, NoSuchElementException):
        return False
