"""Audio: decoding against soundfile, resampling, header refusal, skipped files, features against references,
the mandarin-tones splits, and short training runs of the audio recipes on small generated clips."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from danlu.data.audio import AudioFormat, decode_audio, fit_length
from danlu.errors import DataError

RATE = 16_000


def tone(f0: float | np.ndarray, seconds: float = 0.5, rate: int = RATE, amp: float = 0.3) -> np.ndarray:
    """A harmonic tone with a (possibly moving) fundamental: f0 is Hz, or an array of Hz per sample."""
    n = int(seconds * rate)
    f = np.broadcast_to(np.asarray(f0, np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    env = np.minimum(1, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.02 * rate))
    return (amp * wave * env / 1.5).astype(np.float32)


def write(path: Path, x: np.ndarray, rate: int = RATE, fmt: str | None = None, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate, format=fmt, subtype=subtype)
    return path


FORMATS = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"),
           ("mp3", "MP3", "MPEG_LAYER_III")]


@pytest.mark.parametrize("ext,fmt,subtype", FORMATS)
def test_each_format_decodes_as_soundfile_reads_it(tmp_path, ext, fmt, subtype):
    stereo = np.stack([tone(220.0), tone(330.0)], 1)
    path = write(tmp_path / f"clip.{ext}", stereo, fmt=fmt, subtype=subtype)
    ref, rate = sf.read(path, dtype="float32", always_2d=True)
    ours = decode_audio(path)  # fmt=None: the whole clip at its own rate, channels averaged
    assert rate == RATE
    exact = ext in ("wav", "flac")  # the lossy decoders' float output can differ by an ulp between reads
    np.testing.assert_allclose(ours, ref.mean(1), rtol=0, atol=0 if exact else 1e-6)
    fitted = decode_audio(path.read_bytes(), AudioFormat(RATE, 1.0, "start"))  # bytes, as the server sends
    assert fitted.shape == (RATE,)
    np.testing.assert_allclose(fitted[: len(ours)], ours, rtol=0, atol=0 if exact else 1e-6)
    assert not fitted[len(ours):].any()


def test_resampling_matches_the_analytic_signal(tmp_path):
    t = np.arange(44_100) / 44_100
    path = write(tmp_path / "a.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44_100, subtype="FLOAT")
    out = decode_audio(path, AudioFormat(16_000, 1.0))
    want = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000)
    inner = slice(400, -400)  # the filter's edges
    assert np.abs(out[inner] - want[inner]).max() < 2e-3


def test_fit_centres_or_starts():
    x = np.arange(1, 5, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 8, "center"), [0, 0, 1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(fit_length(x, 8, "start"), [1, 2, 3, 4, 0, 0, 0, 0])
    np.testing.assert_array_equal(fit_length(x, 2, "center"), [2, 3])


def test_header_claiming_days_of_audio_is_refused_before_decoding():
    buf = io.BytesIO()
    sf.write(buf, tone(200.0, 0.1), RATE, format="FLAC")
    data = bytearray(buf.getvalue())
    # STREAMINFO: 20 bits rate, 3 channels, 5 bits per sample, 36 bits total samples, from byte 18
    packed = int.from_bytes(data[18:26], "big") | ((1 << 36) - 1)
    data[18:26] = packed.to_bytes(8, "big")
    with pytest.raises(DataError, match="claims .* s of audio"):
        decode_audio(bytes(data))


def test_header_claiming_ten_megahertz_is_refused():
    buf = io.BytesIO()
    sf.write(buf, tone(200.0, 0.1), RATE, format="WAV", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    data[24:28] = struct.pack("<I", 10_000_000)
    data[28:32] = struct.pack("<I", 20_000_000)
    with pytest.raises(DataError, match="sample rate of 10,000,000"):
        decode_audio(bytes(data))


def test_folder_lists_corrupt_empty_and_silent_clips(tmp_path):
    from danlu.data import load
    from danlu.recipe import DataConfig

    for c, f in (("low", 150.0), ("high", 400.0)):
        for i in range(6):
            write(tmp_path / c / f"{i}.wav", tone(f * (1 + 0.02 * i)))
    (tmp_path / "low" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    (tmp_path / "low" / "empty.ogg").write_bytes(b"")
    write(tmp_path / "high" / "silent.flac", np.zeros(RATE // 2, np.float32))
    (tmp_path / "high" / "notes.txt").write_text("not audio")
    splits, schema = load(DataConfig(name="audiofolder", root=tmp_path, seconds=0.5, test_fraction=0.3), seed=0)
    assert schema.kind == "audio" and schema.classes == ["high", "low"] and schema.input_shape == [8000]
    assert sum(splits.sizes().values()) == 12
    notes = " ".join(splits.notes)
    for name in ("broken.wav", "empty.ogg", "silent.flac", "notes.txt"):
        assert name in notes
    assert "silent" in notes
    _, again = load(DataConfig(name="audiofolder", root=tmp_path, seconds=0.5, test_fraction=0.3), seed=0)
    assert again.audio == schema.audio  # the second read comes from the cache, same format


def test_log_mel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    from danlu.models.audio_features import LogMel

    rng = np.random.default_rng(0)
    x = tone(np.linspace(120, 300, RATE), 1.0) + 0.01 * rng.standard_normal(RATE).astype(np.float32)
    kwargs = dict(n_fft=512, hop_length=160, win_length=400, n_mels=64, fmin=20.0, fmax=8000.0)
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=x.astype(np.float64), sr=RATE, center=True,
                                                             pad_mode="constant", power=2.0, **kwargs),
                              ref=1.0, amin=1e-10, top_db=None)
    lm = LogMel(RATE, n_fft=512, win_length=400, hop=160, n_mels=64, f_min=20.0)
    ours64 = lm(torch.from_numpy(x.astype(np.float64))[None])[0].numpy()
    assert ours64.shape == ref.shape
    assert np.abs(ours64 - ref).max() < 1e-4  # dB
    ours32 = lm(torch.from_numpy(x)[None])[0].numpy()
    assert np.abs(ours32 - ref).max() < 1e-3  # float32 rounding
    by_matmul = lm(torch.from_numpy(x)[None], power=lm._power_by_matmul(torch.from_numpy(x)[None]))[0].numpy()
    assert np.abs(by_matmul - ref).max() < 1e-3  # the ONNX path


@pytest.mark.parametrize("f0", [85.0, 140.0, 233.0, 410.0])
def test_yin_finds_the_fundamental(f0):
    from danlu.models.audio_features import PitchContour, Yin

    x = torch.from_numpy(tone(f0, 0.5))[None]
    est, aper, _ = Yin(RATE, 160)(x)
    assert abs(float(est[0, 10:-10].median()) / f0 - 1) < 0.01
    assert float(aper[0, 10:-10].max()) < 0.2
    est8, _, _ = PitchContour(RATE, 160).track(x)  # decimated to 8 kHz
    assert abs(float(est8[0, 10:-10].median()) / f0 - 1) < 0.01


def test_pitch_contour_sees_rising_and_falling():
    from danlu.models.audio_features import PitchContour

    up = tone(np.geomspace(150, 300, RATE // 2))
    down = tone(np.geomspace(300, 150, RATE // 2))
    feats, level = PitchContour(RATE, 160)(torch.from_numpy(np.stack([up, down])))
    contour = feats[:, 0] * 4  # semitones about each clip's mean
    assert float(contour[0, -1] - contour[0, 0]) > 9 and float(contour[1, -1] - contour[1, 0]) < -9
    assert abs(float(level[0] - level[1])) < 0.5  # same mean pitch


# ------------------------------------------------------------------ mandarin-tones on a generated gcin layout

SYLLABLES = ["ㄇㄚ", "ㄅㄚ", "ㄉㄚ", "ㄊㄧ", "ㄌㄧ", "ㄋㄧ", "ㄍㄨ", "ㄎㄨ", "ㄏㄨ", "ㄙㄨ", "ㄓㄜ", "ㄕㄜ"]
CONTOURS = {"": (1.0, 1.0, 1.0), "2": (0.85, 0.9, 1.15), "3": (0.85, 0.7, 0.9), "4": (1.2, 1.0, 0.7)}


def fake_gcin(root: Path, syllables: list[str] = SYLLABLES) -> Path:
    """ogg/<syllable><tone>/<speaker>.ogg with synthetic contours (clearly not speech): two 'speakers' an
    octave apart."""
    for i, syl in enumerate(syllables):
        for mark, (a, b, c) in CONTOURS.items():
            for speaker, base in (("3", 120.0), ("5", 240.0)):
                seconds = 0.3 + 0.02 * (i % 5)
                n = int(seconds * RATE)
                f = base * np.interp(np.linspace(0, 1, n), [0, 0.5, 1], [a, b, c])
                write(root / "ogg" / f"{syl}{mark}" / f"{speaker}.ogg", tone(f, seconds), fmt="OGG", subtype="VORBIS")
    return root


def test_speaker_split_never_mixes_speakers(tmp_path):
    from danlu.data import load
    from danlu.recipe import DataConfig

    root = fake_gcin(tmp_path / "gcin")
    for train_speaker in ("3", "5"):
        cfg = DataConfig(name="mandarin-tones", root=root, split="speaker", speaker=train_speaker)
        splits, schema = load(cfg, seed=0)
        speaker_of = {s: {Path(n).stem for n in getattr(splits, s).names} for s in ("train", "val", "test")}
        assert speaker_of["train"] == speaker_of["val"] == {train_speaker}
        assert speaker_of["test"] == {"5" if train_speaker == "3" else "3"}
        assert schema.audio["train_speaker"] == train_speaker
    splits, _ = load(DataConfig(name="mandarin-tones", root=root, split="syllable", test_fraction=0.25), seed=0)
    bases = {s: {Path(n).parent.name.rstrip("1234") for n in getattr(splits, s).names}
             for s in ("train", "val", "test")}
    assert not bases["train"] & bases["test"] and not bases["train"] & bases["val"] and not bases["val"] & bases["test"]
    assert {Path(n).stem for n in splits.test.names} == {"3", "5"}


def test_neutral_tone_as_a_fifth_class_or_dropped(tmp_path):
    from danlu.data import load
    from danlu.recipe import DataConfig

    root = fake_gcin(tmp_path / "gcin", SYLLABLES[:6])
    write(root / "ogg" / "ㄉㄜ1" / "3.ogg", tone(150.0, 0.2), fmt="OGG", subtype="VORBIS")
    write(root / "ogg" / "ㄌㄜ1" / "5.ogg", tone(200.0, 0.2), fmt="OGG", subtype="VORBIS")
    _, dropped = load(DataConfig(name="mandarin-tones", root=root), seed=0)
    splits, kept = load(DataConfig(name="mandarin-tones", root=root, neutral="class"), seed=0)
    assert dropped.classes == ["tone1", "tone2", "tone3", "tone4"]
    assert kept.classes == [*dropped.classes, "neutral"]
    assert sum(splits.sizes().values()) == 6 * 4 * 2 + 2


def _quick(*extra: str) -> list[str]:
    return ["train.epochs=2", "train.batch_size=32", "model.widths=[8,8]", *extra]


def test_recipes_train_evaluate_and_predict_on_generated_tones(tmp_path, cli):
    from tests.conftest import last_json

    root = fake_gcin(tmp_path / "gcin")
    code, out, err = cli("train", "mandarin-tones", f"data.root={root}", *_quick(), "--json")
    assert code == 0, err
    run = last_json(out)["run"]
    report = (Path(run) / "report.md").read_text(encoding="utf-8")
    assert "tone3" in report
    voices = json.loads((Path(run) / "voices.json").read_text(encoding="utf-8"))["voices"]
    assert sorted(round(v["centre_hz"] / 60) for v in voices) == [2, 4]  # the 120 Hz and 240 Hz voices
    code, out, err = cli("train", "mandarin-tones-cross-speaker", f"data.root={root}", "data.speaker=5",
                         "data.adapt=true", "model.pitch_norm=voice", *_quick(), "--json")
    assert code == 0, err
    run = last_json(out)["run"]  # exported and served below: the voice table travels with the weights
    voices = json.loads((Path(run) / "voices.json").read_text(encoding="utf-8"))["voices"]
    assert [v["from"] for v in voices] == ["training clips", "unlabelled clips (adaptation)"]  # data.adapt
    assert voices[0]["centre_hz"] > voices[1]["centre_hz"]  # trained on 5 (240 Hz), adapted to 3 (120 Hz)
    clip = root / "ogg" / "ㄇㄚ3" / "3.ogg"
    code, out, err = cli("predict", run, str(clip), "--json")
    assert code == 0, err
    top = last_json(out)["predictions"][0]["top"]
    assert top[0]["label"].startswith("tone")
    from danlu.data.audio import decode_many
    from danlu.predictor import Predictor

    predictor = Predictor.load(run)  # a clip predicted is the same numbers as the same clip in the training cache
    cached = torch.from_numpy(decode_many([clip], AudioFormat.from_dict(predictor.schema.audio))[0].astype(np.float32))
    assert torch.equal(predictor.audio_tensor([clip]), cached / 32768.0)

    code, out, err = cli("export", run, "--json")  # features inside the graph; parity checked on the test split
    assert code == 0, err
    meta = json.loads((Path(run) / "model.onnx.json").read_text(encoding="utf-8"))
    assert meta["parity"]["agreement"] == 1.0 and "resample" in meta["preprocess"]

    from fastapi.testclient import TestClient

    from danlu.serve.app import create_app

    with TestClient(create_app(run), base_url="http://localhost") as client:
        answer = client.post("/v1/predict", files=[("files", ("clip.ogg", clip.read_bytes(), "audio/ogg"))])
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["top"][0]["label"] == top[0]["label"]
        bad = client.post("/v1/predict", files=[("files", ("x.wav", b"RIFF not audio", "audio/wav"))])
        assert bad.status_code == 422 and "not a readable audio file" in bad.text


def test_audiofolder_recipe_on_a_users_folder(tmp_path, cli):
    from tests.conftest import last_json

    folder = tmp_path / "my_clips"
    for i in range(8):  # synthetic test data: rising and falling chirps
        write(folder / "up" / f"{i}.wav", tone(np.geomspace(150 + 10 * i, 400, RATE // 2)))
        write(folder / "down" / f"{i}.flac", tone(np.geomspace(400, 150 + 10 * i, RATE // 2)))
    code, out, err = cli("train", "audiofolder-cnn", f"data.root={folder}", "data.seconds=0.5", *_quick(), "--json")
    assert code == 0, err
    assert os.path.isfile(Path(last_json(out)["run"]) / "model.safetensors")


def test_batch_augmentation_moves_pitch_and_is_off_in_eval():
    from danlu.models.audio import WaveAugment
    from danlu.models.audio_features import LogMel

    aug = WaveAugment(RATE, gain_db=6, noise_snr=(30, 40), shift_s=0.05, pitch_semitones=12, time_masks=2,
                      freq_masks=2)
    x = torch.from_numpy(np.stack([tone(200.0, 0.5)] * 4))
    aug.eval()
    assert torch.equal(aug.wave(x), x) and aug.semitones(4, x) is None
    aug.train()
    out = aug.wave(x)
    assert out.shape == x.shape and not torch.equal(out, x)
    lm = LogMel(RATE, n_fft=1024, hop=160)
    power = lm.power(x)
    up = aug.stretch(power, torch.full((4,), 12.0))  # an octave up: the 200 Hz peak moves to 400 Hz
    bin_hz = RATE / 1024
    assert abs(float(power[0, :, 20].argmax()) * bin_hz - 200) < bin_hz
    assert abs(float(up[0, :, 20].argmax()) * bin_hz - 400) < 2 * bin_hz
    spec = torch.randn(4, 40, 50)
    masked = aug.masks(spec)
    assert (masked != spec).any() and masked.shape == spec.shape


def test_explain_draws_a_time_frequency_occlusion_map(tmp_path):
    """A model that only listens to 0.1-0.2 s below 500 Hz: the map must say so."""
    from danlu.explanations.audio import occlusion

    class Window(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mags = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True).abs()
            share = mags[:, :16, 12:25].sum((1, 2)) / mags.sum((1, 2))  # below 500 Hz, about 0.1-0.2 s
            return torch.stack([4 * share, torch.zeros_like(share)], 1)

    x = torch.from_numpy(tone(200.0, 0.5))[None]
    heat = occlusion(Window(), x, torch.tensor([0]), RATE, bands=8, windows=10)[0]
    top_band, top_window = divmod(int(heat.argmax()), 10)
    assert top_band <= 1 and 1 <= top_window <= 4
    assert float(heat[4:].abs().max()) < 1e-3  # bands above ~1 kHz never mattered
