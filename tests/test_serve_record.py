"""The page's record button for audio runs, in headless Chromium with a fake microphone that plays a WAV file:
record, stop, and the page shows a prediction; the server got a 16-bit PCM mono WAV holding that sound.

Runs whenever chromium and chromedriver are installed; under CI=true it must run (a missing browser fails).
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import soundfile as sf

from tests.test_audio import RATE, tone, write
from tests.test_serve_browser import CHROMEDRIVER, CHROMIUM, HAVE_BROWSER, headless_chrome, wait

F0 = 440.0  # the fake microphone's pitch: the recording must peak there


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    from danlu.api import train

    folder = tmp_path_factory.mktemp("clips")
    for i in range(6):  # synthetic test data: rising and falling chirps
        write(folder / "up" / f"{i}.wav", tone(np.geomspace(150 + 10 * i, 400, RATE // 2)))
        write(folder / "down" / f"{i}.wav", tone(np.geomspace(400, 150 + 10 * i, RATE // 2)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))
        return train("audiofolder-cnn", [f"data.root={folder}", "data.seconds=0.5", "train.epochs=1",
                                         "model.widths=[8,8]"],
                     runs_dir=tmp_path_factory.mktemp("runs"), progress=False).run


@pytest.fixture(scope="module")
def mic_browser(tmp_path_factory):
    assert HAVE_BROWSER, f"CI needs {CHROMIUM} and {CHROMEDRIVER}"
    clip = write(tmp_path_factory.mktemp("mic") / "mic.wav", np.concatenate([tone(F0, 2.0)] * 2), subtype="PCM_16")
    driver = headless_chrome(tmp_path_factory.mktemp("chrome"), "--use-fake-ui-for-media-stream",
                             "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={clip}",
                             browser_log=True)  # to see CSP violations
    yield driver
    driver.quit()


def test_record_button_sends_a_wav_and_shows_the_prediction(audio_run, mic_browser, monkeypatch, tmp_path):
    import time

    from selenium.webdriver.common.by import By

    import danlu.serve.app as app_module
    from danlu.serve.app import create_app
    from danlu.serve.server import BackgroundServer

    uploads: list[tuple[str, bytes]] = []
    parse = app_module.parse_uploads

    def spy(files, *args, **kwargs):  # what the server was sent, before it parses it
        uploads.extend(files)
        return parse(files, *args, **kwargs)

    monkeypatch.setattr(app_module, "parse_uploads", spy)
    browser = mic_browser
    with BackgroundServer(create_app(audio_run)) as server:
        browser.get(server.url + "/")
        wait(browser, lambda d: d.find_element(By.ID, "model-name").text == "audiofolder-cnn")
        assert browser.find_element(By.ID, "audio-input").is_displayed()
        assert not browser.find_element(By.ID, "tabular-input").is_displayed()
        assert "0.5 s of sound at 16000 Hz" in browser.find_element(By.ID, "facts").text
        record = browser.find_element(By.ID, "record")
        record.click()
        wait(browser, lambda d: "Stop" in record.text)
        time.sleep(1.0)
        record.click()
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .bar"))
        labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .bar .label")]
        assert labels and set(labels) <= {"up", "down"}
        assert not browser.find_element(By.ID, "error").is_displayed()
        assert "Record" in record.text and browser.find_element(By.ID, "playback").is_displayed()
        assert [name for name, _ in uploads] == ["recording.wav"]
        if os.environ.get("DANLU_SCREENSHOT"):
            browser.save_screenshot(os.environ["DANLU_SCREENSHOT"])
        assert browser.find_element(By.CSS_SELECTOR, "#results h3").text == "recording.wav"
        # a chosen file goes the same way
        browser.find_element(By.ID, "audio-file").send_keys(str(write(tmp_path / "rise.flac", tone(
            np.geomspace(150, 400, RATE // 2)))))
        wait(browser, lambda d: d.execute_script(  # read in one go: the results are replaced as they arrive
            "const h = document.querySelector('#results h3'); return h && h.textContent") == "rise.flac")
        assert browser.find_element(By.ID, "audio-name").text == "rise.flac"
        logs = [e["message"] for e in browser.get_log("browser")]
        assert not [m for m in logs if "Content Security Policy" in m or "Uncaught" in m], logs
        import httpx  # the page shows the server's answer for these very bytes

        again = httpx.post(server.url + "/v1/predict", files=[("files", ("again.wav", uploads[0][1], "audio/wav"))],
                           timeout=10)
        assert again.json()["predictions"][0]["top"][0]["label"] == labels[0]
        why = httpx.post(server.url + "/v1/explain", files=[("files", ("again.wav", uploads[0][1], "audio/wav"))],
                         timeout=60)
        assert why.status_code == 200 and why.json()["explanations"][0]["map"]["shape"] == [16, 16]
        # "Why?" on the page: the occlusion figure of the clip on screen (sent again as a data URL)
        browser.find_element(By.ID, "explain-toggle").click()
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#explain-view img.heatmap.spectral"), timeout=60)
        assert "Occlusion" in browser.find_element(By.ID, "explain-status").text

    data = uploads[0][1]
    info = sf.info(io.BytesIO(data))
    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
    assert 0.5 <= info.duration <= 10 and info.samplerate >= 8000, (info.duration, info.samplerate)
    x, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert len(data) == 44 + 2 * len(x)  # a plain 44-byte RIFF/WAVE header, then the samples
    x = x[len(x) // 4:]  # past the start, where the fake device may still be silent
    assert np.sqrt(np.mean(x**2)) > 0.01
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    assert abs(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()] - F0) < 5
