"""``mandarin-tones``: gcin-voice's recorded syllables (ogg/<zhuyin syllable><tone digit>/<speaker>.ogg) by tone.

Two speakers only, so splits are by what a model must generalize over, never random clips:
- data.split=syllable (recipe mandarin-tones): whole base syllables (ㄇㄚ in all its tones, both voices) are
  held out for validation and test, so no test syllable was heard in training in any tone or voice;
- data.split=speaker (recipe mandarin-tones-cross-speaker): train (and validate, on held-out syllables) on
  data.speaker, test on every clip of the other voice.
With data.adapt (split=speaker only) the test speaker's clips go to the model without labels before
training (Splits.unlabelled), so tone_net's voice normalization is measured on the test voice: transductive.
The folder's tone digit: none = tone 1, 2-4 = tones 2-4, 1 = the neutral tone (13 syllables), kept as a
fifth class with data.neutral=class or dropped (data.neutral=drop).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from danlu.data.audiofolder import audio_format, decode_cached, skipped_note, to_splits
from danlu.data.locate import find_dataset, where_looked
from danlu.data.splits import Splits
from danlu.errors import DataError
from danlu.recipe import DataConfig
from danlu.schema import Schema

TONES = ("tone1", "tone2", "tone3", "tone4")
NEUTRAL = "neutral"
SECONDS = 0.64  # the longest clip is 0.63 s
FOLDER = "gcin-voice"


def tone_of(syllable: str) -> str:
    """'ㄇㄚ3' → tone3; 'ㄇㄚ' → tone1; 'ㄉㄜ1' → neutral."""
    last = syllable[-1:]
    return {"1": NEUTRAL, "2": "tone2", "3": "tone3", "4": "tone4"}.get(last, "tone1")


def base_of(syllable: str) -> str:
    return syllable.rstrip("1234")


def find_clips(root: Path) -> list[tuple[Path, str, str, str]]:
    """(path, tone, base syllable, speaker) for every clip under root/ogg (or root)."""
    top = root / "ogg" if (root / "ogg").is_dir() else root
    clips = []
    for folder in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for clip in sorted(folder.iterdir()):
            if clip.suffix.lower() == ".ogg":
                clips.append((clip, tone_of(folder.name), base_of(folder.name), clip.stem))
    if not clips:
        raise DataError(f"no gcin-voice clips under {top}", hint="expected ogg/<syllable>/<speaker>.ogg")
    return clips


def hold_out(bases: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded ``fraction`` of the distinct base syllables."""
    unique = sorted(set(bases))
    rng = np.random.default_rng(seed)
    k = round(len(unique) * fraction)
    return {unique[i] for i in rng.permutation(len(unique))[:k]}


def load_mandarin_tones(cfg: DataConfig, seed: int, data_dir: Path | None) -> tuple[Splits, Schema]:
    root = find_dataset(FOLDER, cfg.root, data_dir)
    if root is None:
        raise DataError(f"gcin-voice not found (looked in {where_looked(FOLDER, data_dir)})",
                        hint="set data.root to the gcin-voice folder (Debian package gcin-voice: "
                             "/usr/share/gcin/ogg) or DANLU_DATA to the folder holding gcin-voice/")
    clips = find_clips(Path(root))
    if cfg.neutral == "drop":
        clips = [c for c in clips if c[1] != NEUTRAL]
    classes = list(TONES) + ([NEUTRAL] if cfg.neutral == "class" else [])
    speakers = sorted({c[3] for c in clips})
    split = cfg.split or "syllable"
    if split == "speaker":
        if len(speakers) < 2:
            raise DataError(f"a cross-speaker split needs two speakers; {root} has {speakers}")
        train_speaker = cfg.speaker or speakers[0]
        if train_speaker not in speakers:
            raise DataError(f"data.speaker={train_speaker} is not a speaker of gcin-voice",
                            hint=f"speakers: {', '.join(speakers)}")
    fmt = audio_format(cfg, SECONDS)
    x, ok, failed = decode_cached("mandarin-tones", [c[0] for c in clips], fmt)
    notes = [skipped_note("unreadable clip(s)", failed)] if failed else []
    kept = [clips[i] for i in ok]
    bases = [c[2] for c in kept]
    test_bases = hold_out(bases, cfg.test_fraction, seed)
    val_bases = hold_out([b for b in bases if b not in test_bases], cfg.val_fraction, seed + 1)
    side = []
    for _, _, base, speaker in kept:
        if split == "speaker":
            side.append("test" if speaker != train_speaker else "val" if base in val_bases else "train")
        else:
            side.append("test" if base in test_bases else "val" if base in val_bases else "train")
    side_arr = np.array(side)
    labels = np.array([classes.index(c[1]) for c in kept], np.int64)
    parts = {}
    for s in ("train", "val", "test"):
        idx = np.flatnonzero(side_arr == s)
        if s == "train" and cfg.limit_train:
            idx = np.sort(np.random.default_rng(seed).permutation(idx)[: cfg.limit_train])
        parts[s] = (x[idx], labels[idx], [str(kept[i][0]) for i in idx])
    how = (f"syllables held out: {len(test_bases)} base syllables for test, {len(val_bases)} for validation, "
           "both speakers" if split == "syllable" else
           f"speaker {train_speaker} trains (validation: {len(val_bases)} held-out base syllables), the other "
           "speaker is the test set")
    notes.append(how)
    extra = {"speakers": speakers, "split": split}
    if split == "speaker":
        extra["train_speaker"] = train_speaker
    elif cfg.adapt:
        raise DataError("data.adapt needs data.split=speaker (a test voice to adapt to)",
                        hint="the syllable split trains on both voices; drop data.adapt")
    if cfg.adapt:
        extra["adapted_to"] = "test speaker's clips, without labels (transductive)"
        notes.append(f"data.adapt: the model measured the test speaker's pitch on its {len(parts['test'][0])} "
                     "clips without labels before training (transductive adaptation)")
    splits, schema = to_splits(parts, classes, fmt, f"mandarin-tones:{root}", notes, extra)
    if cfg.adapt:
        splits.unlabelled = splits.test.x  # the waveforms only: labels stay with the test split
    return splits, schema
