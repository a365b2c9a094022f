"""The fast paths of serving sound give the numbers the slow ones gave: plain PCM16 WAV bytes read without
libsndfile, bc_resnet's frequency pooling and residual sum out of training, |STFT|² in one pass, and a
clip served as base64 JSON (decoded on the event loop) or resampled in the decode pool."""

from __future__ import annotations

import base64
import io
import struct
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from danlu.data import audio as audio_module
from danlu.data.audio import AudioFormat, decode_audio, pcm16_wav
from tests.test_audio import RATE, tone, write


def wav_bytes(x: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def with_chunk_before_data(wav: bytes, tag: bytes, payload: bytes) -> bytes:
    """The same WAV with one more chunk (odd sizes get their pad byte) between 'fmt ' and 'data'."""
    at = wav.index(b"data")
    chunk = tag + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)
    out = wav[:at] + chunk + wav[at:]
    return out[:4] + struct.pack("<I", len(out) - 8) + out[8:]


def soundfile_reading(data: bytes) -> tuple[int, np.ndarray]:
    x, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return rate, x


@pytest.mark.parametrize("channels,n,rate", [(1, RATE, RATE), (2, 7001, RATE), (1, 22_050, 22_050)])
def test_plain_wav_reads_the_samples_libsndfile_reads(channels, n, rate):
    rng = np.random.default_rng(channels)
    x = rng.uniform(-1, 1, (n, channels)).astype(np.float32)
    x[:5] = [[-1.0] * channels, [1.0] * channels, [0.0] * channels, [-0.5] * channels, [0.99999] * channels]
    for data in (wav_bytes(x, rate), with_chunk_before_data(wav_bytes(x, rate), b"LIST", b"odd")):
        got = pcm16_wav(data)
        assert got is not None and got[0] == rate
        ref_rate, ref = soundfile_reading(data)
        np.testing.assert_array_equal(got[1].astype(np.float32) * np.float32(1 / 32768), ref)


def test_other_wavs_are_left_to_soundfile():
    x = tone(220.0)
    plain = wav_bytes(x)
    assert pcm16_wav(wav_bytes(x, subtype="FLOAT")) is None
    assert pcm16_wav(wav_bytes(x, subtype="PCM_24")) is None
    assert pcm16_wav(plain[:-3]) is None  # the data chunk is cut short
    assert pcm16_wav(b"RIFX" + plain[4:]) is None  # big-endian
    assert pcm16_wav(plain[:40]) is None and pcm16_wav(b"") is None
    extensible = io.BytesIO()
    sf.write(extensible, np.stack([x] * 3, 1), RATE, format="WAVEX", subtype="PCM_16")
    assert pcm16_wav(extensible.getvalue()) is None


@pytest.mark.parametrize("rate,channels", [(RATE, 1), (RATE, 2), (44_100, 1)])
def test_decoding_bytes_equals_the_soundfile_path(monkeypatch, rate, channels):
    x = np.stack([tone(220.0 * (k + 1), 0.7, rate) for k in range(channels)], 1)
    data = wav_bytes(x, rate)
    fmt = AudioFormat(RATE, 1.0, "center")
    fast = decode_audio(data, fmt)
    monkeypatch.setattr(audio_module, "pcm16_wav", lambda data: None)
    np.testing.assert_array_equal(fast, decode_audio(data, fmt))


def test_plain_wav_header_claims_are_refused_as_before():
    data = bytearray(wav_bytes(tone(220.0)))
    struct.pack_into("<I", data, 24, 10_000_000)  # the sample rate field of 'fmt '
    with pytest.raises(audio_module.DataError, match="sample rate of 10,000,000 Hz"):
        decode_audio(bytes(data), AudioFormat())
    silent = wav_bytes(np.zeros(RATE, np.float32))
    with pytest.raises(audio_module.DataError, match="silent"):
        decode_audio(silent, AudioFormat())


@pytest.mark.parametrize("height", [40, 41, 2])
def test_frequency_pooling_equals_max_pool(height):
    from danlu.models.audio import FreqPool

    pool, ref = FreqPool(), torch.nn.MaxPool2d((2, 1))
    x = torch.randn(3, 4, height, 17)
    with torch.inference_mode():
        assert torch.equal(pool(x), ref(x))
    leaf = x.clone().requires_grad_()  # training keeps max_pool2d (and its gradient)
    pool(leaf).sum().backward()
    grad = leaf.grad.clone()
    leaf.grad = None
    ref(leaf).sum().backward()
    assert torch.equal(grad, leaf.grad)


def test_bc_resnet_inference_equals_the_training_graph_and_batches_equal_clips():
    from danlu.models.audio import AudioResNet

    torch.manual_seed(0)
    model = AudioResNet({"sample_rate": RATE}, 3, {"n_mels": 40, "widths": [8, 12, 16], "blocks": 1,
                                                  "dropout": 0.1, "normalize": True, "augment": {}}).eval()
    for m in model.modules():  # trained-looking BatchNorm statistics, not the identity
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.from_numpy(np.stack([tone(f, 1.0) for f in (150.0, 300.0, 600.0, 900.0)]))
    with torch.inference_mode():
        fast = model(x)
        clips = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
        spec = model.spectrogram.logmel(x)
        spec_clips = torch.cat([model.spectrogram.logmel(x[i:i + 1]) for i in range(len(x))])
    slow = model(x.clone().requires_grad_()).detach()  # the graph-building path: max_pool2d, out-of-place sums
    assert torch.equal(fast, slow)
    torch.testing.assert_close(clips, fast, rtol=0, atol=1e-5)
    torch.testing.assert_close(spec_clips, spec, rtol=0, atol=1e-4)
    power = model.spectrogram.logmel.power(x)
    stft = torch.stft(x, 512, RATE // 100, window=model.spectrogram.logmel.window, center=True,
                      pad_mode="constant", return_complex=True)
    assert torch.equal(power, stft.real.square() + stft.imag.square())


@pytest.fixture(scope="module")
def tiny_audio_run(tmp_path_factory):
    from danlu.api import train

    root = tmp_path_factory.mktemp("two-tones")
    rng = np.random.default_rng(0)
    for i in range(6):
        for label, f in (("low", 150.0), ("high", 600.0)):
            write(root / label / f"{i}.wav", tone(f * (1 + 0.05 * rng.standard_normal()), 0.5))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DANLU_CACHE", str(tmp_path_factory.mktemp("cache")))
        result = train("audiofolder-cnn", [f"data.root={root}", "data.seconds=0.5", "train.epochs=1",
                                           "model.widths=[8,8]", "train.batch_size=4", "data.test_fraction=0.25"],
                       runs_dir=tmp_path_factory.mktemp("runs"), progress=False, plots=False)
    return SimpleNamespace(run=result.run, root=root)


def test_served_clips_predict_as_the_files_do(tiny_audio_run, tmp_path):
    from fastapi.testclient import TestClient

    from danlu.predictor import Predictor
    from danlu.serve.app import create_app
    from danlu.serve.engine import Engine

    plain = tiny_audio_run.root / "high" / "0.wav"
    other_rate = write(tmp_path / "22k.wav", tone(580.0, 0.5, 22_050), 22_050)
    stereo_float = write(tmp_path / "stereo.wav", np.stack([tone(150.0), tone(160.0)], 1), subtype="FLOAT")
    engine = Engine.load(tiny_audio_run.run)
    assert engine.plain_audio([plain.read_bytes()])  # decoded on the event loop
    assert not engine.plain_audio([other_rate.read_bytes()]) and not engine.plain_audio([stereo_float.read_bytes()])
    predictor = Predictor.load(tiny_audio_run.run)
    for path in (plain, other_rate, stereo_float):  # libsndfile reads the files; the server gets their bytes
        assert torch.equal(engine.prepare([path.read_bytes()]), predictor.audio_tensor([path]))
    with TestClient(create_app(tiny_audio_run.run), base_url="http://localhost") as client:
        for path in (plain, other_rate, stereo_float):
            body = {"inputs": [base64.b64encode(path.read_bytes()).decode()], "top_k": 2}
            served = client.post("/v1/predict", json=body)
            assert served.status_code == 200, served.text
            uploaded = client.post("/v1/predict", files=[("files", (path.name, path.read_bytes(), "audio/wav"))])
            assert uploaded.status_code == 200, uploaded.text
            expected = predictor.predict([path], top_k=2)[0]["top"]
            assert served.json()["predictions"][0]["top"] == expected == uploaded.json()["predictions"][0]["top"]


def old_base64(text: str) -> bytes | None:
    """decode_base64_image's decoding before its strict fast path (None: refused)."""
    import binascii

    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    for alt in (None, b"-_"):
        try:
            return base64.b64decode(text, altchars=alt, validate=True)
        except (binascii.Error, ValueError):
            pass
    return None


def test_strict_base64_fast_path_decodes_and_refuses_as_before():
    from danlu.serve.inputs import RequestError, decode_base64_image

    rng = np.random.default_rng(0)
    samples = ["", "==", "QQ", "QQ=", "QQ==", "QUJD", "QUJD=", "QUJD==", "QQ=A", "Q Q = =", "QUJ\nD", "-_-_",
               "+/+/", "QUJDé", "Q===", "QUJD====", "=QUJ"]
    for n in (1, 2, 3, 100, 32_044):
        raw = base64.b64encode(rng.integers(0, 256, n, dtype=np.uint8).tobytes()).decode()
        samples += [raw, raw.rstrip("="), raw[:-1], base64.urlsafe_b64encode(raw.encode()).decode(),
                    "\n".join(raw[k:k + 76] for k in range(0, len(raw), 76)), raw + "A", "A" + raw]
    for text in samples:
        want = old_base64(text)
        try:
            got = decode_base64_image(text, 0)
        except RequestError:
            got = None
        assert got == (want or None), text[:40]
