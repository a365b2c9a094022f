"""SYNTHETIC spoken digits: a small audio folder in the layout users give `danlu train audiofolder-cnn`.

    python benchmarks/make_spoken_digits.py OUT [--per-voice 3] [--digits 0123456789] [--seed 0]
    danlu train audiofolder-cnn data.root=OUT

Every clip is spoken by espeak-ng (Debian: apt-get install espeak-ng), a formant synthesizer, not a person:
it stands in for a user's own recordings in tests and docs, and says nothing about accuracy on human speech.
Each digit 0-9 is one class, said in Mandarin (零 一 二 … 九, voice cmn) and in English (zero … nine,
voice en-us), by several espeak voice variants, each at randomly drawn speed (words per minute), pitch,
pitch range and loudness. The folder name, every file name and OUT/.synthetic.json say so.

Split by voice, not by clip: OUT/train/<digit>/ and OUT/test/<digit>/, where the test voices (variants) are
never heard in training, so the test accuracy is about new voices, not new takes of known ones. The
validation split is carved from train/ by the recipe's data.val_fraction.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

MANDARIN = "零一二三四五六七八九"
ENGLISH = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LANGUAGES = {"zh": ("cmn", MANDARIN), "en": ("en-us", ENGLISH)}
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "f1", "f2", "f4", "croak", "klatt", "klatt3")
TEST_VARIANTS = ("m7", "f5", "klatt2")  # voices never heard in training
SPEED_WPM = (110, 230)
PITCH = (20, 80)  # espeak-ng -p, 0-99
AMPLITUDE = (60, 160)  # espeak-ng -a, 0-200 (100 is the default)


def espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SystemExit("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return path


def _say(exe: str, voice: str, text: str, rng: random.Random, out: Path) -> dict:
    speed, pitch = rng.randint(*SPEED_WPM), rng.randint(*PITCH)
    amplitude = rng.randint(*AMPLITUDE)
    subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude), "-w", str(out),
                    text], check=True, capture_output=True, timeout=30)
    return {"voice": voice, "speed_wpm": speed, "pitch": pitch, "amplitude": amplitude}


def make(out: Path, per_voice: int = 3, digits: str = "0123456789", seed: int = 0,
         train_variants: tuple[str, ...] = TRAIN_VARIANTS, test_variants: tuple[str, ...] = TEST_VARIANTS) -> dict:
    """Write the folder; returns the manifest (also saved as OUT/.synthetic.json, hidden from the reader)."""
    exe = espeak()
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    clips = []
    for split, variants in (("train", train_variants), ("test", test_variants)):
        for d in digits:
            folder = out / split / d
            folder.mkdir(parents=True, exist_ok=True)
            for lang, (voice, words) in LANGUAGES.items():
                for variant in variants:
                    for take in range(per_voice):
                        path = folder / f"synthetic-{lang}-{variant}-{take}.wav"
                        info = _say(exe, f"{voice}+{variant}", words[int(d)], rng, path)
                        clips.append({"file": str(path.relative_to(out)), "digit": d, "language": lang, **info})
    manifest = {"synthetic": True, "generator": f"espeak-ng ({_version(exe)}) via benchmarks/make_spoken_digits.py",
                "note": "machine-spoken test data, not human recordings", "seed": seed,
                "train_variants": list(train_variants), "test_variants": list(test_variants), "clips": clips}
    (out / ".synthetic.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


def _version(exe: str) -> str:
    try:
        first = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown version"
    return first.strip().splitlines()[0] if first.strip() else "unknown version"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (e.g. synthetic-spoken-digits)")
    parser.add_argument("--per-voice", type=int, default=3, help="takes per digit, language and voice (3)")
    parser.add_argument("--digits", default="0123456789", help="which digits are classes (all ten)")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    manifest = make(a.out, a.per_voice, a.digits, a.seed)
    n = len(manifest["clips"])
    print(f"wrote {n} synthetic clips (espeak-ng, Mandarin and English) under {a.out}: "
          f"train/ ({', '.join(manifest['train_variants'])}) and test/ ({', '.join(manifest['test_variants'])})")


if __name__ == "__main__":
    main(sys.argv[1:])
