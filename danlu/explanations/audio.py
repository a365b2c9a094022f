"""Time-frequency occlusion for audio models: which stretch of which frequency band decided the class.

The clip's short-time Fourier transform is cut into ``bands`` mel-spaced frequency bands x ``windows``
time windows; each patch in turn is zeroed, the waveform rebuilt (inverse STFT) and run through the whole
model, features included. A patch's score is how much the target's probability drops without it. Because
the model sees the rebuilt audio, the map covers every branch (for tone_net: the pitch contour as well as
the spectrogram), unlike a gradient taken inside one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

BANDS = 16
WINDOWS = 16
N_FFT = 512
CHUNK = 64


def _band_edges(sample_rate: int, bands: int) -> np.ndarray:
    from danlu.models.audio_features import hz_to_mel, mel_to_hz

    mels = np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), bands + 1)
    bins = np.round(mel_to_hz(mels) / (sample_rate / 2) * (N_FFT // 2)).astype(int)
    bins[-1] = N_FFT // 2 + 1
    return np.maximum.accumulate(bins)


@torch.no_grad()
def occlusion(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, sample_rate: int,
              bands: int = BANDS, windows: int = WINDOWS) -> torch.Tensor:
    """[N, bands, windows] drops in the target's probability (positive: the patch supported the target)."""
    model.eval()
    hop = N_FFT // 4
    window = torch.hann_window(N_FFT)
    samples = x.shape[-1]
    spec = torch.stft(x.float(), N_FFT, hop, window=window, return_complex=True)  # [N, F, T]
    edges = _band_edges(sample_rate, bands)
    t_edges = np.linspace(0, spec.shape[-1], windows + 1).round().astype(int)
    out = torch.zeros(len(x), bands, windows)
    for n in range(len(x)):
        base = torch.softmax(model(x[n:n + 1].float()), -1)[0, targets[n]]
        masked = []
        for b in range(bands):
            for w in range(windows):
                s = spec[n].clone()
                s[edges[b]:edges[b + 1], t_edges[w]:t_edges[w + 1]] = 0
                masked.append(s)
        probs = []
        for start in range(0, len(masked), CHUNK):
            part = torch.stack(masked[start:start + CHUNK])
            wave = torch.istft(part, N_FFT, hop, window=window, length=samples)
            probs.append(torch.softmax(model(wave), -1)[:, targets[n]])
        out[n] = (base - torch.cat(probs)).view(bands, windows)
    return out


def map_axes(sample_rate: int, samples: int, bands: int = BANDS, windows: int = WINDOWS) -> dict[str, list[float]]:
    """The map's cell edges: ``bands_hz`` (bands + 1 frequencies) and ``seconds`` (windows + 1 times), as
    occlusion cut them (STFT frames centred every N_FFT / 4 samples)."""
    hz = _band_edges(sample_rate, bands).astype(float) * sample_rate / N_FFT
    hz[-1] = sample_rate / 2
    frames = samples // (N_FFT // 4) + 1
    t_edges = np.linspace(0, frames, windows + 1).round()
    secs = np.minimum(t_edges * (N_FFT // 4) / sample_rate, samples / sample_rate)
    return {"bands_hz": [round(float(v), 1) for v in hz], "seconds": [round(float(v), 4) for v in secs]}


def _figure(spectrogram: np.ndarray, heat: np.ndarray, title: str, seconds: float, sample_rate: int) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot(2, 1, 1)
    ax.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, spectrogram.shape[0]))
    ax.set_ylabel("mel band")
    ax.set_xticks([])
    fig.colorbar(ax.images[0], ax=ax, label="dB")
    ax2 = fig.add_subplot(2, 1, 2)
    limit = float(np.abs(heat).max()) or 1.0
    im = ax2.imshow(heat, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                    extent=(0, seconds, 0, heat.shape[0]))
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel(f"band (mel, 0-{sample_rate // 2000} kHz)")
    fig.colorbar(im, ax=ax2, label="probability drop when removed")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def figure(spectrogram: np.ndarray, heat: np.ndarray, title: str, seconds: float, sample_rate: int,
           path: Path) -> None:
    """Two panels: the log-mel spectrogram, and the occlusion map over the same time and frequency axes."""
    from danlu.explanations.render import _save

    _save(_figure(spectrogram, heat, title, seconds, sample_rate), path)


def figure_png(spectrogram: np.ndarray, heat: np.ndarray, title: str, seconds: float, sample_rate: int) -> bytes:
    """The same two panels as PNG bytes (the server's answer)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _figure(spectrogram, heat, title, seconds, sample_rate)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
