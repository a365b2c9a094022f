"""tone_net's voice normalization: voices measured without speaker labels, a clip's pitch z-scored about its
voice (two voices with different ranges give the same features), the running median, and data.adapt handing
the test voice's clips to the model without labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_audio import RATE, SYLLABLES, fake_gcin, tone

SHAPES = {"flat": (1, 1, 1), "rise": (-1, 0, 1), "fall": (1, 0, -1), "dip": (0, -1.5, 0)}  # semitones


def _voice(centre_hz: float, range_factor: float) -> np.ndarray:
    """Two clips per shape about centre_hz, the shape's semitones times range_factor (clearly not speech)."""
    clips = []
    for a, b, c in SHAPES.values():
        for seconds in (0.3, 0.36):
            n = int(seconds * RATE)
            st = range_factor * np.interp(np.linspace(0, 1, n), [0, 0.5, 1], [a, b, c])
            clip = np.zeros(int(0.5 * RATE), np.float32)
            clip[:n] = tone(centre_hz * 2 ** (st / 12), seconds)
            clips.append(clip)
    return np.stack(clips)


def test_voices_found_without_labels_make_two_ranges_alike():
    from danlu.models.audio_features import PitchContour, fit_voices

    low, high = _voice(120.0, 1.0), _voice(240.0, 2.0)  # an octave apart, the higher voice with twice the range
    x = torch.from_numpy(np.concatenate([high, low]))
    contour = PitchContour(RATE, 160, threshold=0.25, smooth=5, norm="voice")
    tracks = contour.track(x)
    voices, sizes = fit_voices(contour, *tracks, count=2)
    order = voices[:, 0].argsort()
    voices, sizes = voices[order], [sizes[i] for i in order.tolist()]
    assert sizes == [8, 8]
    centres_hz = 100 * 2 ** (voices[:, 0] / 12)
    assert abs(float(centres_hz[0]) / 120 - 1) < 0.04 and abs(float(centres_hz[1]) / 240 - 1) < 0.04
    assert 1.6 < float(voices[1, 1] / voices[0, 1]) < 2.4  # the spread sees the range
    z, _ = contour.features(*tracks, voices=voices)
    plain, _ = PitchContour(RATE, 160, threshold=0.25, smooth=5).features(*tracks)
    n = len(high)
    voice_gap = float((z[:n, 0] - z[n:, 0]).abs().mean())
    plain_gap = float((plain[:n, 0] - plain[n:, 0]).abs().mean())
    assert voice_gap < 0.15 and plain_gap > 2 * voice_gap  # about its voice, the octave and the range drop out
    flat, dip = z[n + 0, 0], z[n + 6, 0]
    assert float(flat.mean() - dip.mean()) > 0.5  # the height within the voice stays (tone 1 high, tone 3 low)


def test_running_median_matches_numpy():
    from danlu.models.audio_features import _running_median

    v = torch.randn(3, 40)
    v[0, 17] = 50.0  # a one-frame jump
    ours = _running_median(v, 5).numpy()
    padded = np.pad(v.numpy(), ((0, 0), (2, 2)), mode="edge")
    ref = np.median(np.stack([padded[:, i:i + 40] for i in range(5)]), 0)
    np.testing.assert_allclose(ours, ref)
    assert ours[0, 17] < 5 and torch.equal(_running_median(v, 1), v)


def test_adapt_hands_the_test_voice_over_without_labels(tmp_path):
    from danlu.data import load
    from danlu.errors import DataError
    from danlu.recipe import DataConfig, Recipe

    root = fake_gcin(tmp_path / "gcin", SYLLABLES[:4])
    splits, schema = load(DataConfig(name="mandarin-tones", root=root, split="speaker", speaker="3", adapt=True),
                          seed=0)
    assert splits.unlabelled is splits.test.x and isinstance(splits.unlabelled, torch.Tensor)
    assert "transductive" in schema.audio["adapted_to"]
    plain, _ = load(DataConfig(name="mandarin-tones", root=root, split="speaker", speaker="3"), seed=0)
    assert plain.unlabelled is None
    with pytest.raises(DataError, match="data.adapt needs data.split=speaker"):
        load(DataConfig(name="mandarin-tones", root=root, split="syllable", adapt=True), seed=0)
    with pytest.raises(ValueError, match="must be odd"):
        Recipe.model_validate({"data": {"name": "mandarin-tones"}, "model": {"name": "tone_net", "smooth": 4}})


def test_adapt_needs_voice_normalization():
    from danlu.errors import DanluError
    from danlu.models.audio import ToneNet
    from danlu.models.specs import validate_options

    audio = {"sample_rate": RATE, "seconds": 0.5, "adapted_to": "test speaker's clips, without labels"}
    with pytest.raises(DanluError, match="pitch_norm=voice"):
        ToneNet(audio, 4, validate_options("tone_net", {"spectrogram": False}))
    net = ToneNet(audio, 4, validate_options("tone_net", {"spectrogram": False, "pitch_norm": "voice"}))
    assert net.fits_to_data and net.voices.shape == (8, 4)
