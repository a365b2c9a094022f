"""THE audio decoding function: any WAV/FLAC/OGG/MP3 file → mono float32 at one sample rate, one length.

decode_audio is the single definition of audio preprocessing shared by training, ``danlu predict`` and the
server, like decode_image for pictures: changing it changes what models hear (bump DECODE_VERSION).
Files are read with soundfile (libsndfile ships in its wheel), channels averaged, resampled with soxr's
high-quality resampler, then cropped or zero-padded to ``seconds``. The header is read first: a file that
claims hours of audio or an absurd sample rate is refused before a sample is decoded (a 100-byte FLAC
header can promise gigabytes).
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from danlu.errors import DataError

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3"})
DECODE_VERSION = 1
MAX_SAMPLE_RATE = 384_000  # the highest rate real recorders use; 10 MHz in a header is a damaged or hostile file
MAX_SECONDS = 600.0  # a clip to classify; longer files are refused from the header
SILENT_PEAK = 10 ** (-80 / 20)  # a clip whose loudest sample is below -80 dBFS has nothing to hear
Fit = Literal["center", "start"]


@dataclass(frozen=True)
class AudioFormat:
    """What decode_audio produces: recorded in schema.json's ``audio`` so prediction decodes the same way."""

    sample_rate: int = 16_000
    seconds: float = 1.0
    fit: Fit = "center"  # where a short clip sits in the zero padding, and which part of a long one is kept

    @property
    def samples(self) -> int:
        return max(1, round(self.sample_rate * self.seconds))

    def to_dict(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "seconds": self.seconds, "fit": self.fit,
                "samples": self.samples, "decode_version": DECODE_VERSION}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioFormat:
        return cls(int(d["sample_rate"]), float(d["seconds"]), d.get("fit", "center"))


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError:  # pragma: no cover - installed with danlu[audio]
        raise DataError("reading audio needs the soundfile package", hint="pip install 'danlu[audio]'") from None
    return soundfile


def _open(source: str | os.PathLike | bytes) -> Any:
    sf = _soundfile()

    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source
    try:
        return sf.SoundFile(fp)
    except sf.LibsndfileError as e:
        raise DataError(f"not a readable audio file ({e.error_string})",
                        hint="send WAV, FLAC, OGG Vorbis or MP3 audio") from None
    except (TypeError, RuntimeError) as e:
        raise DataError(f"not a readable audio file ({e})", hint="send WAV, FLAC, OGG Vorbis or MP3 audio") from None


def clip_header(source: str | os.PathLike | bytes) -> tuple[int, int, int]:
    """(sample rate, frames, channels) from a file's header, nothing decoded; a DataError if unreadable."""
    with _open(source) as f:
        return int(f.samplerate), int(f.frames), int(f.channels)


def check_header(rate: int, frames: int, channels: int, max_seconds: float = MAX_SECONDS) -> None:
    """Refuse what a header claims before decoding it: absurd rates, hours of audio, hundreds of channels."""
    if not 1_000 <= rate <= MAX_SAMPLE_RATE:
        raise DataError(f"the header claims a sample rate of {rate:,} Hz (accepted: 1,000 to {MAX_SAMPLE_RATE:,})",
                        hint="the file is damaged or not a real recording")
    if not 1 <= channels <= 64:
        raise DataError(f"the header claims {channels} channels (accepted: 1 to 64)",
                        hint="the file is damaged or not a real recording")
    if frames > max_seconds * rate:
        raise DataError(f"the header claims {frames / rate:,.0f} s of audio, more than {max_seconds:,.0f} s",
                        hint="cut the recording into clips, or the file is damaged")


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """soxr's high-quality (HQ) resampler; float32 in and out, along the first axis."""
    if rate == target:
        return x
    import soxr

    return soxr.resample(x, rate, target, quality="HQ").astype(np.float32, copy=False)


def fit_length(x: np.ndarray, samples: int, fit: Fit) -> np.ndarray:
    """Crop or zero-pad a mono clip to ``samples``: centred (fit=center) or from its start (fit=start)."""
    n = len(x)
    if n == samples:
        return x
    if n > samples:
        start = (n - samples) // 2 if fit == "center" else 0
        return x[start:start + samples]
    out = np.zeros(samples, np.float32)
    start = (samples - n) // 2 if fit == "center" else 0
    out[start:start + n] = x
    return out


def decode_audio(source: str | os.PathLike | bytes, fmt: AudioFormat | None = None,
                 max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """One file (path or encoded bytes) → float32 [samples] mono at fmt.sample_rate, fit to fmt.seconds.

    fmt=None returns the whole clip at its own rate, mixed to mono. Empty and silent clips are DataErrors
    (a training folder lists them as skipped); so is a header refused by check_header.
    """
    plain = pcm16_wav(source) if isinstance(source, bytes | bytearray | memoryview) else None
    if plain is not None:
        rate, pcm = plain
        check_header(rate, pcm.shape[0], pcm.shape[1], max_seconds)
        data = pcm.astype(np.float32) * np.float32(1.0 / 32768.0)  # what libsndfile's float read gives
    else:
        with _open(source) as f:
            check_header(f.samplerate, f.frames, f.channels, max_seconds)
            rate = f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise DataError("the audio file holds no samples", hint="record the clip again")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise DataError("the audio holds NaN or infinite samples", hint="the file is damaged")
    if float(np.abs(mono).max()) < SILENT_PEAK:
        raise DataError("the clip is silent (peak below -80 dBFS)", hint="record the clip again")
    if fmt is None:
        return mono
    return fit_length(resample(mono, rate, fmt.sample_rate), fmt.samples, fmt.fit)


def pcm16_wav(data: bytes | bytearray | memoryview) -> tuple[int, np.ndarray] | None:
    """(sample rate, int16 [frames, channels]) of a plain 16-bit PCM WAV held in memory, read without
    libsndfile; None for anything else (other encodings, WAVE_FORMAT_EXTENSIBLE, a data chunk that is
    missing, truncated or not whole frames), which soundfile then reads.

    Why: soundfile reads bytes through Python callbacks that each need the GIL, so under load a served
    clip's decode waited on the model thread (py-spy, 32 clients: the decode pool spent over half its
    time opening files). The samples are the same numbers libsndfile gives (tests check it).
    """
    view = memoryview(data).cast("B")
    if len(view) < 44 or view[:4] != b"RIFF" or view[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(view):
        tag, size = bytes(view[pos:pos + 4]), int.from_bytes(view[pos + 4:pos + 8], "little")
        body = pos + 8
        if tag == b"fmt ":
            if size < 16 or body + size > len(view):
                return None
            code, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", view, body)
            if code != 1 or bits != 16 or not 1 <= channels <= 64 or align != 2 * channels:
                return None
            fmt = (rate, channels)
        elif tag == b"data":
            if fmt is None or body + size > len(view) or size % (2 * fmt[1]):
                return None
            pcm = np.frombuffer(view, "<i2", size // 2, body).reshape(-1, fmt[1])
            return fmt[0], pcm
        pos = body + size + (size & 1)  # chunks are padded to an even length
    return None


def to_int16(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] → int16 (half the memory; 16 bits is what the recordings hold)."""
    return np.clip(np.rint(x * 32767.0), -32768, 32767).astype(np.int16)


def _decode_or_reason(path: Path, fmt: AudioFormat) -> np.ndarray | str:
    try:
        return decode_audio(path, fmt)
    except DataError as e:
        return e.message
    except Exception as e:  # noqa: BLE001 - any decoder failure means a bad file, reported by path
        return f"{type(e).__name__}: {e}"


def decode_many(paths: Sequence[str | os.PathLike], fmt: AudioFormat, workers: int | None = None
                ) -> tuple[np.ndarray, list[int], list[tuple[Path, str]]]:
    """Decode files in threads (libsndfile and soxr release the GIL) into int16 [N_ok, samples].

    Unreadable, corrupt, empty, silent and refused files are left out and returned as (path, reason);
    ok_indices maps each output row back to its position in paths.
    """
    paths = [Path(p) for p in paths]
    workers = workers or max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))
    out = np.zeros((len(paths), fmt.samples), np.int16)
    errors: dict[int, str] = {}

    def run(i: int) -> None:
        got = _decode_or_reason(paths[i], fmt)
        if isinstance(got, str):
            errors[i] = got
        else:
            out[i] = to_int16(got)

    if workers == 1 or len(paths) < 8:
        for i in range(len(paths)):
            run(i)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="danlu-audio") as pool:
            list(pool.map(run, range(len(paths)), chunksize=16))
    ok = [i for i in range(len(paths)) if i not in errors]
    return (out if len(ok) == len(paths) else out[ok]), ok, [(paths[i], errors[i]) for i in sorted(errors)]
