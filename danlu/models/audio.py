"""Audio classifiers that take raw waveforms [B, samples]: features and (in training mode) augmentation are
their first layers, so a run folder, the server and an ONNX export need only the decoded clip.

- ``bc_resnet``: a small broadcasted-residual CNN on the log-mel spectrogram (after Kim et al., "Broadcasted
  Residual Learning for Efficient Keyword Spotting", 2021): per block a frequency-wise depthwise conv on the
  2-D map, then the map averaged over frequency, a temporal depthwise conv on that 1-D track, and the
  result broadcast back over frequency and added. BatchNorm stands in for the paper's SubSpectral norm.
- ``tone_net``: the pitch contour (YIN, time-normalized, semitones about the clip's own mean) through a
  small 1-D conv net, joined with a bc_resnet embedding of the spectrogram: for tasks where the pitch
  contour is the signal (Mandarin tones).

Augmentation on whole batches, training mode only (model.augment): random gain, noise at a random SNR,
time shift, pitch shift (the power spectrum stretched along frequency; the contour's level moved),
pitch-range scaling of the contour, SpecAugment time and frequency masks.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from danlu.errors import DanluError
from danlu.models.audio_features import LogMel, PitchContour, fit_voices, normalize_utterance


class WaveAugment(nn.Module):
    """The batch augmentations; every draw is per clip. Identity in eval mode."""

    def __init__(self, sample_rate: int, gain_db: float = 0.0, noise_snr: tuple[float, float] | None = None,
                 shift_s: float = 0.0, pitch_semitones: float = 0.0, range_scale: float = 1.0,
                 register_semitones: float = 0.0, time_masks: int = 0, time_mask_frames: int = 10,
                 freq_masks: int = 0, freq_mask_bins: int = 8):
        super().__init__()
        self.sample_rate, self.gain_db, self.noise_snr = sample_rate, gain_db, noise_snr
        self.shift = int(shift_s * sample_rate)
        self.pitch, self.range_scale, self.register = pitch_semitones, range_scale, register_semitones
        self.time_masks, self.time_mask_frames = time_masks, time_mask_frames
        self.freq_masks, self.freq_mask_bins = freq_masks, freq_mask_bins

    def _uniform(self, n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, device=like.device)

    def wave(self, x: torch.Tensor) -> torch.Tensor:
        """Gain, time shift (zero-filled, not wrapped) and noise on [B, S]."""
        if not self.training:
            return x
        b, s = x.shape
        if self.gain_db:
            x = x * 10 ** (self._uniform(b, -self.gain_db, self.gain_db, x) / 20)[:, None]
        if self.shift:
            offsets = torch.randint(-self.shift, self.shift + 1, (b,), device=x.device)
            idx = torch.arange(s, device=x.device)[None] - offsets[:, None]
            x = torch.where((idx >= 0) & (idx < s), x.gather(1, idx.clamp(0, s - 1)), torch.zeros_like(x))
        if self.noise_snr is not None:
            lo, hi = self.noise_snr
            power = x.square().mean(1, keepdim=True).clamp_min(1e-10)
            snr = self._uniform(b, lo, hi, x)[:, None]
            x = x + torch.randn_like(x) * (power / 10 ** (snr / 10)).sqrt()
        return x

    def semitones(self, b: int, like: torch.Tensor) -> torch.Tensor | None:
        return self._uniform(b, -self.pitch, self.pitch, like) if self.training and self.pitch else None

    def stretch(self, power: torch.Tensor, semitones: torch.Tensor | None) -> torch.Tensor:
        """Pitch shift on a power spectrogram [B, F, T]: bin f takes the energy of bin f / 2^(s/12)."""
        if semitones is None:
            return power
        b, nf, _ = power.shape
        ratio = 2 ** (semitones / 12)
        src = torch.arange(nf, device=power.device)[None].float() / ratio[:, None]  # [B, F]
        i0 = src.floor().long().clamp(0, nf - 1)
        i1 = (i0 + 1).clamp(max=nf - 1)
        frac = (src - i0.float()).clamp(0, 1)[..., None]
        inside = (src <= nf - 1)[..., None]
        out = power.gather(1, i0[..., None].expand_as(power)) * (1 - frac) + \
            power.gather(1, i1[..., None].expand_as(power)) * frac
        return torch.where(inside, out, torch.zeros_like(out)) / ratio[:, None, None]

    def scales(self, b: int, like: torch.Tensor) -> torch.Tensor | None:
        if not self.training or self.range_scale <= 1:
            return None
        r = math.log(self.range_scale)
        return torch.exp(self._uniform(b, -r, r, like))

    def registers(self, b: int, like: torch.Tensor) -> torch.Tensor | None:
        """The contour's register moved by up to ± ``register`` semitones (voice-normalized contours only)."""
        return self._uniform(b, -self.register, self.register, like) if self.training and self.register else None

    def masks(self, spec: torch.Tensor) -> torch.Tensor:
        """SpecAugment (Park et al. 2019): zero random time and frequency stripes of [B, F, T] (to the mean)."""
        if not self.training or not (self.time_masks or self.freq_masks):
            return spec
        b, nf, nt = spec.shape
        keep = torch.ones_like(spec, dtype=torch.bool)
        for count, width, size, dim in ((self.time_masks, self.time_mask_frames, nt, 2),
                                        (self.freq_masks, self.freq_mask_bins, nf, 1)):
            pos = torch.arange(size, device=spec.device)[None]
            for _ in range(count):
                w = torch.randint(0, width + 1, (b, 1), device=spec.device)
                start = (torch.rand(b, 1, device=spec.device) * (size - w).clamp_min(1)).long()
                hit = (pos >= start) & (pos < start + w)
                keep &= ~(hit[:, None, :] if dim == 2 else hit[:, :, None])
        fill = spec.mean(dim=(1, 2), keepdim=True)
        return torch.where(keep, spec, fill)


def augment_from(options: dict[str, Any], sample_rate: int) -> WaveAugment:
    a = options.get("augment") or {}
    snr = a.get("noise_snr")
    return WaveAugment(sample_rate, gain_db=a.get("gain_db", 0.0), noise_snr=tuple(snr) if snr else None,
                       shift_s=a.get("shift_s", 0.0), pitch_semitones=a.get("pitch_semitones", 0.0),
                       range_scale=a.get("range_scale", 1.0),
                       register_semitones=a.get("register_semitones", 0.0), time_masks=a.get("time_masks", 0),
                       time_mask_frames=a.get("time_mask_frames", 10), freq_masks=a.get("freq_masks", 0),
                       freq_mask_bins=a.get("freq_mask_bins", 8))


class Spectrogram(nn.Module):
    """Waveform → (augmented) log-mel [B, 1, n_mels, T], per-utterance normalized when asked."""

    def __init__(self, sample_rate: int, n_mels: int, normalize: bool, augment: WaveAugment):
        super().__init__()
        self.logmel = LogMel(sample_rate, n_fft=512, win_length=int(0.025 * sample_rate),
                             hop=sample_rate // 100, n_mels=n_mels, f_min=20.0)
        self.normalize, self.augment = normalize, augment

    def forward(self, x: torch.Tensor, semitones: torch.Tensor | None = None) -> torch.Tensor:
        power = self.augment.stretch(self.logmel.power(x), semitones)
        spec = self.logmel(x, power=power)
        spec = normalize_utterance(spec) if self.normalize else (spec + 40.0) / 20.0
        return self.augment.masks(spec).unsqueeze(1)


class BCBlock(nn.Module):
    """Broadcasted residual block: frequency-wise depthwise conv (2-D), temporal depthwise conv on the
    frequency average (1-D), broadcast back and added to the input."""

    def __init__(self, channels: int, dilation: int = 1, dropout: float = 0.1):
        super().__init__()
        self.freq = nn.Sequential(nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), groups=channels, bias=False),
                                  nn.BatchNorm2d(channels))
        self.time = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=False),
            nn.BatchNorm1d(channels), nn.SiLU(), nn.Conv1d(channels, channels, 1, bias=False), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.freq(x)
        t = self.time(f.mean(dim=2))
        if _inference(f):  # the same sums, in f's memory: no two temporaries (serving, ~9 % of a forward pass)
            return f.add_(x).add_(t.unsqueeze(2)).relu_()
        return F.relu(x + f + t.unsqueeze(2))


def _inference(x: torch.Tensor) -> bool:
    """True when nothing will differentiate through x and no exporter is tracing: in-place and reshaped
    fast paths are then safe (and exact)."""
    return not (x.requires_grad or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


class FreqPool(nn.MaxPool2d):
    """MaxPool2d((2, 1)): halves the frequency axis. Out of training it takes the max of each row pair as a
    reshape: the same numbers, ~5x faster on CPU than max_pool2d, which computed indices for a (2, 1)
    window and was a third of bc_resnet's forward pass when serving (py-spy, 32 clients)."""

    def __init__(self) -> None:
        super().__init__((2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-2] // 2
        if h == 0 or not _inference(x):
            return super().forward(x)
        return x[..., :2 * h, :].unflatten(-2, (h, 2)).amax(-2)


class BCResNetBody(nn.Module):
    """[B, 1, n_mels, T] → [B, width] embedding."""

    def __init__(self, n_mels: int, widths: list[int], blocks: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, widths[0], 5, stride=(2, 1), padding=2, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU()]
        prev = widths[0]
        for i, w in enumerate(widths):
            if w != prev:
                layers += [nn.Conv2d(prev, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            layers += [BCBlock(w, dilation=2 ** min(i, 3), dropout=dropout) for _ in range(blocks)]
            if i < len(widths) - 1:
                layers.append(FreqPool())
            prev = w
        self.body = nn.Sequential(*layers)
        self.out_features = prev

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.body(spec).mean(dim=(2, 3))


class AudioResNet(nn.Module):
    """bc_resnet: log-mel → broadcasted residual CNN → linear head."""

    def __init__(self, schema_audio: dict[str, Any], num_outputs: int, options: dict[str, Any]):
        super().__init__()
        rate = int(schema_audio["sample_rate"])
        self.augment = augment_from(options, rate)
        self.spectrogram = Spectrogram(rate, options["n_mels"], options["normalize"], self.augment)
        self.features = BCResNetBody(options["n_mels"], options["widths"], options["blocks"], options["dropout"])
        self.head = nn.Linear(self.features.out_features, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.augment.wave(x)
        spec = self.spectrogram(x, self.augment.semitones(len(x), x))
        return self.head(self.features(spec))


MAX_VOICES = 8  # rows of tone_net's voice table (a fixed shape, so saved weights load into any build)
UNUSED_VOICE = 1e4  # an unused row's centre: never the nearest voice


class TrackCache:
    """YIN tracks of training clips, computed once: the contour branch reads the clean clip (its augmentation
    happens on the contour), so in training every epoch would recompute the same tracks. Keyed by a fixed
    random projection of each clip (float64; two different clips colliding is vanishingly unlikely). Used in
    training mode only; never saved."""

    def __init__(self, samples: int):
        g = torch.Generator().manual_seed(1234)
        self.projection = torch.randn(samples, generator=g, dtype=torch.float64)
        self.tracks: dict[float, tuple[torch.Tensor, ...]] = {}

    def get(self, x: torch.Tensor, compute: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keys = (x.detach().double() @ self.projection.to(x.device)).tolist()
        missing = [i for i, k in enumerate(keys) if k not in self.tracks]
        if missing:
            with torch.no_grad():
                fresh = compute(x[missing])
            for j, i in enumerate(missing):
                self.tracks[keys[i]] = tuple(t[j] for t in fresh)
        rows = [self.tracks[k] for k in keys]
        return tuple(torch.stack([r[n] for r in rows]) for n in range(3))  # type: ignore[return-value]


class ToneNet(nn.Module):
    """tone_net: the pitch contour through a 1-D conv net, plus (optionally) a bc_resnet spectrogram embedding.

    The contour channels (PitchContour): the pitch (semitones about the clip's mean, or with
    ``pitch_norm: voice`` a z-score about the clip's voice), slope, aperiodicity, loudness, optionally the
    voiced duration; with ``level`` one more channel, the clip's mean pitch in semitones about
    ``reference_hz``: a voice's register, so it helps only where the training voices are the test voices (with
    the spectrogram branch to tell them apart); across speakers it measured worse (docs/audio.md).
    """

    def __init__(self, schema_audio: dict[str, Any], num_outputs: int, options: dict[str, Any]):
        super().__init__()
        rate = int(schema_audio["sample_rate"])
        self.augment = augment_from(options, rate)
        self.points, self.level = options["points"], options["level"]
        self.truncate = float((options.get("augment") or {}).get("truncate", 0.0))
        self.pitch = PitchContour(rate, rate // 100, points=self.points, f_min=options["f_min"],
                                  f_max=options["f_max"], voicing=options.get("voicing", 0.35),
                                  threshold=options.get("yin_threshold", 0.15), smooth=options.get("smooth", 1),
                                  norm=options.get("pitch_norm", "utterance"), duration=options.get("duration", False))
        self.reference = 12 * math.log2(options["reference_hz"] / 100.0)
        self._cache: TrackCache | None = None
        self.voice_count = int(options.get("voices", 1))
        if "adapted_to" in schema_audio and self.pitch.norm != "voice":
            raise DanluError("data.adapt measures the test voice for model.pitch_norm=voice; this tone_net "
                             "normalizes each clip by itself", hint="add model.pitch_norm=voice or drop data.adapt")
        self.voice_sources: list[tuple[str, int] | None] = [None] * MAX_VOICES
        if self.pitch.norm == "voice":  # (centre, spread) in semitones per voice; rows past the fitted ones unused
            table = torch.tensor([[UNUSED_VOICE, 1.0, UNUSED_VOICE, 1.0]]).repeat(MAX_VOICES, 1)
            self.register_buffer("voices", table)
        width = options["contour_width"]
        channels = self.pitch.channels + int(self.level)
        self.contour = nn.Sequential(
            nn.Conv1d(channels, width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Conv1d(width, width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Flatten(), nn.Dropout(options["dropout"]), nn.Linear(width * self.points, 2 * width), nn.ReLU())
        dims = 2 * width
        self.spectrogram: Spectrogram | None = None
        if options["spectrogram"]:
            self.spectrogram = Spectrogram(rate, options["n_mels"], True, self.augment)
            self.features = BCResNetBody(options["n_mels"], options["widths"], options["blocks"], options["dropout"])
            dims += self.features.out_features
        self.head = nn.Sequential(nn.Dropout(options["dropout"]), nn.Linear(dims, num_outputs))

    def tracks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.training:
            return self.pitch.track(x)
        if self._cache is None:
            self._cache = TrackCache(x.shape[-1])
        return self._cache.get(x, self.pitch.track)

    @property
    def fits_to_data(self) -> bool:
        """With pitch_norm=voice the training clips' voices are measured once before the first step."""
        return self.pitch.norm == "voice"

    def _measure(self, x: torch.Tensor, count: int) -> tuple[torch.Tensor, list[int]]:
        if not x.is_floating_point():  # int16 waveforms straight from a split
            x = x.float() / 32768.0
        tracks = [self.pitch.track(x[i:i + 256].float()) for i in range(0, len(x), 256)]
        f0, aper, rms = (torch.cat([t[k] for t in tracks]) for k in range(3))
        return fit_voices(self.pitch, f0, aper, rms, count)

    @torch.no_grad()
    def fit_to_data(self, x: torch.Tensor) -> None:
        """The training clips' ``voices`` voices (their speakers need not be known: see fit_voices)."""
        rows, sizes = self._measure(x, self.voice_count)
        self.voices[: len(rows)] = rows.to(self.voices.device)
        self.voice_sources[: len(rows)] = [("training clips", n) for n in sizes]

    @torch.no_grad()
    def adapt(self, x: torch.Tensor) -> None:
        """One more voice from unlabelled clips of one speaker (transductive: a test voice measured on its own
        clips, labels never seen); it takes the row after the training voices. In evaluation each clip takes the
        likeliest voice of all (fitted and adapted) by its upper pitch."""
        rows, sizes = self._measure(x, 1)
        self.voices[self.voice_count] = rows[0].to(self.voices.device)
        self.voice_sources[self.voice_count] = ("unlabelled clips (adaptation)", sizes[0])

    def voice_table(self) -> list[dict[str, Any]]:
        """The fitted voices for the run folder's voices.json."""
        if self.pitch.norm != "voice":
            return []
        out = []
        for i, (centre, spread, top, top_spread) in enumerate(self.voices.tolist()):
            if centre >= UNUSED_VOICE:
                continue
            source, clips = self.voice_sources[i] or ("saved weights", None)
            out.append({"voice": i, "centre_hz": round(100 * 2 ** (centre / 12), 2),
                        "centre_semitones": round(centre, 4), "spread_semitones": round(spread, 4),
                        "clip_top_semitones": round(top, 4), "clip_top_spread": round(top_spread, 4),
                        "from": source, "clips": clips})
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = len(x)
        semitones = self.augment.semitones(b, x)
        keep = None
        if self.training and self.truncate > 0:
            keep = 1 - self.truncate * torch.rand(b, device=x.device)
        voices = None
        if self.pitch.norm == "voice":  # training: the training voices; evaluation: any fitted or adapted one
            voices = self.voices[: self.voice_count] if self.training else self.voices
        track, level = self.pitch.features(*self.tracks(x), range_scale=self.augment.scales(b, x), keep=keep,
                                           voices=voices, shift=self.augment.registers(b, x))
        x = self.augment.wave(x)
        if self.level:
            lv = level - self.reference + (semitones if semitones is not None else 0)
            track = torch.cat([track, (lv / 6.0)[:, None, None].expand(-1, 1, self.points)], dim=1)
        parts = [self.contour(track)]
        if self.spectrogram is not None:
            parts.append(self.features(self.spectrogram(x, semitones)))
        return self.head(torch.cat(parts, dim=1))
