"""Audio features as torch modules on whole batches: log-mel spectrogram, YIN pitch track, pitch contour.

They live beside the models because they are the models' first layers: a run folder holds raw-waveform
models, so ``danlu predict``, the server and the ONNX export need nothing but the decoded clip. The log-mel
matches librosa's ``melspectrogram`` + ``power_to_db`` (Slaney mel scale and norm, centred frames, zero
padding); tests/test_audio_features.py checks it to 1e-4 dB. YIN follows de Cheveigné & Kawahara (2002):
difference function, cumulative-mean normalization, absolute threshold, parabolic interpolation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    f = np.asarray(f, np.float64)
    mel = f / (200.0 / 3)
    log_part = f >= 1000.0
    return np.where(log_part, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """[n_fft//2+1, n_mels] triangular filters on the Slaney mel scale, area-normalized (norm='slaney')."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T.astype(np.float32)


class LogMel(nn.Module):
    """Waveforms [B, S] → log-mel power spectrogram in dB [B, n_mels, T] (T = S // hop + 1)."""

    def __init__(self, sample_rate: int, n_fft: int = 512, win_length: int | None = None, hop: int | None = None,
                 n_mels: int = 64, f_min: float = 20.0, f_max: float | None = None, top_db: float | None = None):
        super().__init__()
        win_length = win_length or n_fft
        self.n_fft, self.hop = n_fft, hop or max(1, sample_rate // 100)
        self.top_db = top_db
        window = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
        left = (n_fft - win_length) // 2  # librosa centres a shorter window inside the FFT frame
        window = F.pad(window, (left, n_fft - win_length - left))
        self.register_buffer("window", window.float(), persistent=False)
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max or sample_rate / 2)
        self.register_buffer("mel", torch.from_numpy(fb), persistent=False)

    def frames(self, samples: int) -> int:
        return samples // self.hop + 1

    def power(self, x: torch.Tensor) -> torch.Tensor:
        """|STFT|² [B, n_fft//2+1, T]; a DFT matrix product while exporting (ONNX has no complex numbers)."""
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            return self._power_by_matmul(x)
        x = x if x.dtype == torch.float64 else x.float()  # float64 in, float64 out (the reference test)
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window.to(x.dtype), center=True,
                          pad_mode="constant", return_complex=True)
        squares = torch.view_as_real(spec).square()  # re², im² in one contiguous pass; the same sum after
        return squares[..., 0] + squares[..., 1]

    def _power_by_matmul(self, x: torch.Tensor) -> torch.Tensor:
        n = self.n_fft
        padded = F.pad(x.float(), (n // 2, n // 2))
        index = frame_index(int(x.shape[-1]) // self.hop + 1, n, self.hop, x.device)
        frames = padded[:, index] * self.window  # [B, T, n]
        k = torch.arange(n // 2 + 1, dtype=torch.float64)[:, None] * torch.arange(n, dtype=torch.float64)[None]
        angle = 2 * math.pi * k / n
        re = frames @ torch.cos(angle).T.float().to(x.device)
        im = frames @ torch.sin(angle).T.float().to(x.device)
        return (re.square() + im.square()).transpose(1, 2)

    def forward(self, x: torch.Tensor, power: torch.Tensor | None = None) -> torch.Tensor:
        p = self.power(x) if power is None else power
        mel = torch.matmul(p.transpose(1, 2), self.mel.to(p.dtype)).transpose(1, 2)
        db = 10.0 * torch.log10(mel.clamp_min(1e-10))
        if self.top_db is not None:
            db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - self.top_db)
        return db


def normalize_utterance(spec: torch.Tensor) -> torch.Tensor:
    """Each clip's spectrogram minus its mean, over its std (over all bins and frames): gain-free."""
    mean = spec.mean(dim=(-2, -1), keepdim=True)
    std = spec.std(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
    return (spec - mean) / std


class Yin(nn.Module):
    """YIN F0 estimates per frame: (f0 Hz [B, T], aperiodicity [B, T] in [0, 1+], frame RMS [B, T]).

    Frames are centred every ``hop`` samples like LogMel's, so both tracks line up. The integration window is
    the longest period (sample_rate / f_min); the first cumulative-mean-normalized dip below ``threshold``
    gives the period, else the global minimum (then aperiodicity says the frame is unvoiced).
    """

    def __init__(self, sample_rate: int, hop: int, f_min: float = 60.0, f_max: float = 500.0,
                 threshold: float = 0.15):
        super().__init__()
        self.sample_rate, self.hop, self.threshold = sample_rate, hop, threshold
        self.tau_min = max(2, int(sample_rate / f_max))
        self.tau_max = int(math.ceil(sample_rate / f_min))
        self.window = self.tau_max
        self.frame = self.window + self.tau_max + 1
        self.n_fft = 1 << (self.frame + self.window - 1).bit_length()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = x.float()
        padded = F.pad(x, (self.window // 2, self.frame - self.window // 2))
        frames = padded[:, frame_index(int(x.shape[-1]) // self.hop + 1, self.frame, self.hop, x.device)]  # [B, T, L]
        w, tmax = self.window, self.tau_max
        head = frames[..., :w]
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():  # ONNX has no complex FFT: lag products
            r = (frames[..., frame_index(tmax + 1, w, 1, x.device)] * head[..., None, :]).sum(-1)
        else:
            spec_all = torch.fft.rfft(frames, self.n_fft)
            spec_head = torch.fft.rfft(head, self.n_fft)
            r = torch.fft.irfft(spec_all * spec_head.conj(), self.n_fft)[..., : tmax + 1]  # r(τ) = Σ f[j] f[j+τ]
        sq = F.pad(frames.square().cumsum(-1), (1, 0))
        taus = torch.arange(tmax + 1, device=x.device)
        energy_tau = sq[..., taus + w] - sq[..., taus]
        d = (r[..., :1] + energy_tau - 2 * r).clamp_min(0)
        cum = d[..., 1:].cumsum(-1)
        cmnd = torch.ones_like(d)
        cmnd[..., 1:] = d[..., 1:] * taus[1:] / cum.clamp_min(1e-12)
        lo = self.tau_min
        seg = cmnd[..., lo: tmax]  # candidates τ in [tau_min, tau_max - 1], with a right neighbour
        left = cmnd[..., lo - 1: tmax - 1]
        right = cmnd[..., lo + 1: tmax + 1]
        dip = (seg < self.threshold) & (seg <= left) & (seg <= right)
        first = torch.where(dip.any(-1), dip.float().argmax(-1), seg.argmin(-1))
        tau = first + lo
        y0 = cmnd.gather(-1, tau[..., None])[..., 0]
        ym = cmnd.gather(-1, (tau - 1)[..., None])[..., 0]
        yp = cmnd.gather(-1, (tau + 1)[..., None])[..., 0]
        denom = ym - 2 * y0 + yp
        shift = torch.where(denom > 1e-9, 0.5 * (ym - yp) / denom.clamp_min(1e-9), torch.zeros_like(y0))
        period = tau.float() + shift.clamp(-1, 1)
        f0 = self.sample_rate / period
        rms = (r[..., 0] / w).clamp_min(0).sqrt()
        return f0, y0, rms


class PitchContour(nn.Module):
    """Waveforms → (tone features [B, C, points], mean pitch [B] in semitones about 100 Hz).

    The features: the voiced stretch of each clip resampled to ``points`` steps (onset consonant and silence
    left out, so they do not shift the contour), as semitones about the clip's own mean (``norm="utterance"``:
    level removed, range kept) or as a z-score about its voice (``norm="voice"``: the nearest voice of
    ``voices`` [V, 2] (centre, scale) in semitones, so a speaker's register and range both drop out but the
    tone's height within the voice stays); then its slope, YIN's aperiodicity, loudness (dB below the clip's
    peak) and, with ``duration``, the voiced stretch's length. YIN runs at 8 kHz (F0 below 500 Hz needs no
    more; 4x less work). Octave errors (YIN's usual failure) are folded back towards the clip's median (or
    its voice's centre); unvoiced frames inside the voiced stretch take the last voiced value, and a running
    median over ``smooth`` frames removes single-frame jumps. ``range_scale`` [B] multiplies the contour,
    ``shift`` [B] (semitones) moves it and ``keep`` [B] in (0, 1] keeps only the first part of
    the voiced stretch (augmentation).
    """

    def __init__(self, sample_rate: int, hop: int, points: int = 24, f_min: float = 60.0, f_max: float = 500.0,
                 voicing: float = 0.35, silence_db: float = -35.0, threshold: float = 0.15, smooth: int = 1,
                 norm: str = "utterance", duration: bool = False):
        super().__init__()
        self.decimate = sample_rate // 8000 if sample_rate % 8000 == 0 and sample_rate > 8000 else 1
        rate = sample_rate // self.decimate
        self.yin = Yin(rate, max(1, hop // self.decimate), f_min, f_max, threshold)
        if self.decimate > 1:  # windowed-sinc low-pass at 0.9 x the new Nyquist frequency
            taps = 16 * self.decimate + 1
            n = torch.arange(taps, dtype=torch.float64) - taps // 2
            cutoff = 0.9 / self.decimate
            h = cutoff * torch.sinc(cutoff * n) * torch.hann_window(taps, periodic=False, dtype=torch.float64)
            self.register_buffer("lowpass", (h / h.sum()).float().view(1, 1, -1), persistent=False)
        self.points, self.voicing, self.silence_db = points, voicing, silence_db
        self.smooth, self.norm, self.duration = smooth, norm, duration
        self.channels = 4 + int(duration)

    def track(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(f0 Hz, aperiodicity, rms) per 10 ms frame, at the reduced rate."""
        x = x.float()
        if self.decimate > 1:
            x = F.conv1d(x[:, None], self.lowpass, padding=self.lowpass.shape[-1] // 2, stride=self.decimate)[:, 0]
        return self.yin(x)

    def forward(self, x: torch.Tensor, range_scale: torch.Tensor | None = None,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features(*self.track(x), range_scale=range_scale, keep=keep)

    def voiced(self, aper: torch.Tensor, rms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(voiced mask, loudness in dB below the clip's peak); a clip with no voiced frame counts all."""
        loud = 20 * torch.log10(rms.clamp_min(1e-6))
        loud = loud - loud.amax(-1, keepdim=True)
        voiced = (aper < self.voicing) & (loud > self.silence_db)
        return voiced | ~voiced.any(-1, keepdim=True), loud

    def semitones(self, f0: torch.Tensor, voiced: torch.Tensor, voices: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Semitones about 100 Hz with octave jumps folded back, and (with ``voices``) each clip's voice row.

        Frames more than 8 semitones from the clip's median are folded towards it. With ``voices`` [V, 4]
        (centre, spread, and the mean and spread of the voice's clips' upper pitch, ``clip_top``) the clip goes
        to the likeliest voice by its upper pitch (the high part of a clip tells a low voice from a high one
        better than its median: a high voice's low tones reach down into a low voice's range), and frames more
        than max(8, 2 spreads) from that voice's centre are moved by octaves towards it (YIN's octave-down error
        on a low voice often covers a whole clip; a wide voice's real lows stay)."""
        st = 12 * torch.log2(f0 / 100.0)
        ref = _masked_median(st, voiced)
        for _ in range(2):  # twice: a two-octave error comes back in two steps
            dev = st - ref
            st = st - 12 * torch.round(dev / 12) * (dev.abs() > 8)
        row = None
        if voices is not None:
            top = clip_top(st, voiced)
            mean, spread = voices[None, :, 2], voices[None, :, 3]
            row = (-spread.log() - 0.5 * ((top - mean) / spread).square()).argmax(-1)
            off = st - voices[row, 0][:, None]
            st = st - 12 * torch.round(off / 12) * (off.abs() > (2 * voices[row, 1][:, None]).clamp_min(8.0))
        return st, row

    def pitch(self, f0: torch.Tensor, aper: torch.Tensor, rms: torch.Tensor, voices: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, ...]:
        """(semitones filled and smoothed, voiced mask, loudness, last voiced frame index, first voiced frame,
        voice row or None) from a YIN track."""
        voiced, loud = self.voiced(aper, rms)
        st, row = self.semitones(f0, voiced, voices)
        t = torch.arange(st.shape[-1], device=st.device).expand_as(st)
        n = st.shape[-1]  # the last voiced frame at or before each frame (a [T, T] mask: cummax has no ONNX op)
        earlier = torch.ones(n, n, dtype=torch.bool, device=st.device).tril()
        last = torch.where(voiced[:, None, :] & earlier, t[:, None, :], torch.full_like(t[:, None, :], -1))
        last = last.amax(-1)
        start = torch.where(voiced, t, torch.full_like(t, 1 << 30)).amin(-1)
        last = torch.where(last < 0, start[:, None].expand_as(last), last)  # before the first voiced frame: it
        return _running_median(st.gather(-1, last), self.smooth), voiced, loud, last, start, row

    def features(self, f0: torch.Tensor, aper: torch.Tensor, rms: torch.Tensor, range_scale: torch.Tensor | None = None,
                 keep: torch.Tensor | None = None, voices: torch.Tensor | None = None,
                 shift: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The tone features and mean pitch from a YIN track (see the class docstring)."""
        st, voiced, loud, last, start_i, row = self.pitch(f0, aper, rms, voices if self.norm == "voice" else None)
        t = torch.arange(st.shape[-1], device=st.device).expand_as(st)
        vf = voiced.float()
        level = (st * vf).sum(-1) / vf.sum(-1)
        if row is not None and voices is not None:  # z-score about the voice: 1 = one of its own spreads
            spread = voices[row, 1]
            contour, scale = (st - voices[row, 0][:, None]) / spread[:, None], 1.0
        else:
            spread = torch.ones_like(level)
            contour, scale = st - level[:, None], 4.0
        if range_scale is not None:
            contour = contour * range_scale[:, None]
        if shift is not None:  # semitones; a register shift is invisible about the clip's own mean
            contour = contour + (shift / spread)[:, None]
        start = start_i.float()
        stop = torch.where(voiced, t, torch.full_like(t, -1)).amax(-1).float()
        if keep is not None:
            stop = start + (stop - start) * keep
        grid = torch.linspace(0, 1, self.points, device=st.device)
        pos = start[:, None] + grid[None] * (stop - start)[:, None]
        i0 = pos.floor().long().clamp(0, st.shape[-1] - 1)
        i1 = (i0 + 1).clamp(max=st.shape[-1] - 1)
        frac = pos - i0.float()

        def sample(v: torch.Tensor) -> torch.Tensor:
            return v.gather(-1, i0) * (1 - frac) + v.gather(-1, i1) * frac

        filled = torch.stack([aper.clamp(0, 1), loud], 1).gather(-1, last[:, None].expand(-1, 2, -1))
        c = sample(contour)
        slope = torch.cat([torch.zeros_like(c[..., :1]), c[..., 1:] - c[..., :-1]], -1) * (self.points / 8.0)
        chans = [c / scale, slope / scale, sample(filled[:, 0]), sample(filled[:, 1]) / 20.0]
        if self.duration:  # the voiced stretch in 300 ms units: neutral tones are short
            chans.append(((stop - start + 1) / 30.0)[:, None].expand(-1, self.points))
        return torch.stack(chans, dim=1), level


@torch.no_grad()
def fit_voices(contour: PitchContour, f0: torch.Tensor, aper: torch.Tensor, rms: torch.Tensor, count: int
               ) -> tuple[torch.Tensor, list[int]]:
    """[count, 4] voices among these clips' YIN tracks (centre and spread of their pitch in semitones about
    100 Hz, mean and spread of their clips' upper pitch) and the clips each voice has. The clips go into
    ``count`` groups by 1-D k-means on their upper pitch (clip_top; the speaker of a clip is not needed), then
    per group: the median and the interquartile range / 1.349 (a standard deviation that a few octave errors do
    not inflate) of its voiced frames, octave-folded towards the group."""
    voiced, _ = contour.voiced(aper, rms)
    st, _ = contour.semitones(f0.float(), voiced)
    top = clip_top(st, voiced)[:, 0]
    count = max(1, min(count, len(top)))
    centres = torch.quantile(top, (torch.arange(count, dtype=torch.float32) + 0.5) / count)
    group = torch.zeros(len(top), dtype=torch.long)
    for _ in range(100):
        group = (top[:, None] - centres[None]).abs().argmin(-1)
        fresh = torch.stack([top[group == j].mean() if (group == j).any() else centres[j] for j in range(count)])
        if torch.equal(fresh, centres):
            break
        centres = fresh
    rows, sizes = [], []
    for j in range(count):
        m = group == j
        top_mean, top_spread = float(top[m].mean()), max(float(top[m].std()) if m.sum() > 1 else 1.0, 1.0)
        centre = float(_masked_median(st[m], voiced[m]).median())
        table = torch.tensor([[centre, 1.0, top_mean, top_spread]])
        st_j, voiced_j, *_ = contour.pitch(f0[m], aper[m], rms[m], table)
        q1, q2, q3 = torch.quantile(st_j[voiced_j], torch.tensor([0.25, 0.5, 0.75]))
        rows.append([float(q2), max(float(q3 - q1) / 1.349, 0.5), top_mean, top_spread])
        sizes.append(int(m.sum()))
    return torch.tensor(rows, dtype=torch.float32), sizes


def clip_top(st: torch.Tensor, voiced: torch.Tensor, q: float = 0.9) -> torch.Tensor:
    """[B, 1] the ``q`` quantile of each clip's voiced pitch (lower interpolation; by sort, which ONNX has)."""
    low = torch.where(voiced, st, torch.full_like(st, float("-inf"))).sort(-1).values
    n = voiced.sum(-1, keepdim=True)
    idx = (st.shape[-1] - n + ((n - 1).float() * q).floor().long()).clamp(0, st.shape[-1] - 1)
    return low.gather(-1, idx)


def _running_median(v: torch.Tensor, k: int) -> torch.Tensor:
    """Median over ``k`` frames (odd; edges repeated) along the last axis; sort exports to ONNX, median does not."""
    if k <= 1:
        return v
    p = k // 2
    padded = torch.cat([v[..., :1].expand(*v.shape[:-1], p), v, v[..., -1:].expand(*v.shape[:-1], p)], -1)
    n = v.shape[-1]
    stacked = torch.stack([padded[..., i: i + n] for i in range(k)], -1)
    return stacked.sort(-1).values[..., p]


def frame_index(count: int, length: int, hop: int, device: torch.device | None = None) -> torch.Tensor:
    """[count, length] sample indexes of ``count`` frames every ``hop``: framing by gather, which exports to
    ONNX at any batch size (Tensor.unfold does not)."""
    return torch.arange(count, device=device)[:, None] * hop + torch.arange(length, device=device)[None]


def _masked_median(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Median of v over the True entries of mask, per row (lower median), [B, 1]."""
    big = torch.where(mask, v, torch.full_like(v, float("inf")))
    ordered = big.sort(-1).values
    count = mask.sum(-1, keepdim=True).clamp_min(1)
    return ordered.gather(-1, (count - 1) // 2)
