"""The documentation cannot rot: tested command blocks run, the site builds strictly, references are complete.

A ```bash block in docs/ preceded by the line ``<!-- tested -->`` runs here, each in a fresh temporary folder with
this checkout's ``danlu`` first on PATH and DANLU_DATA set as the Makefile sets it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKER = "<!-- tested -->"
BLOCK_TIMEOUT_S = 240  # a hang, not a slow machine: CI shares 2 cores (about 15 s of CPU a block)
sys.path.insert(0, str(DOCS))
import reference_gen  # noqa: E402  (docs/ is not a package)


def collect_blocks() -> list[tuple[str, str]]:
    """(page:line, bash source) of every block marked as tested; a marker not followed by a bash block fails.
    A marker inside another fenced block (an example of the marker itself) is text, not a marker."""
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        fence = ""  # the fence of the code block we are in, if any
        for i, line in enumerate(lines):
            opening = re.match(r"\s*(`{3,}|~{3,})", line)
            if opening and not fence:
                fence = opening.group(1)
                continue
            if fence:
                if line.strip() == fence:
                    fence = ""
                continue
            if line.strip() != MARKER:
                continue
            where = f"{page.relative_to(DOCS)}:{i + 1}"
            start = i + 1
            while start < len(lines) and not lines[start].strip():
                start += 1
            if start >= len(lines) or lines[start].strip() not in ("```bash", "```sh"):
                raise AssertionError(f"{where}: {MARKER} must be followed by a ```bash block")
            end = next((j for j in range(start + 1, len(lines)) if lines[j].strip() == "```"), None)
            if end is None:
                raise AssertionError(f"{where}: the tested block is not closed")
            blocks.append((where, "\n".join(lines[start + 1:end])))
    return blocks


BLOCKS = collect_blocks()


def docs_env(tmp_path: Path) -> dict[str, str]:
    """This checkout's danlu first on PATH (a shim running ``python -m danlu`` with the repo on PYTHONPATH)."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "danlu").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m danlu "$@"\n')
    (shim / "danlu").chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(shim), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    shared = ROOT.parent / "shared" / "datasets"  # as the Makefile: the shared folder beside the repo
    if not env.get("DANLU_DATA") and shared.is_dir():
        env["DANLU_DATA"] = str(shared)
    env["DANLU_CACHE"] = str(tmp_path / "cache")
    env.pop("DANLU_API_KEY", None)
    return env


def test_there_are_tested_blocks():
    assert len(BLOCKS) >= 3, f"only {len(BLOCKS)} blocks marked {MARKER} in docs/"


@pytest.mark.parametrize("where,source", BLOCKS, ids=[w for w, _ in BLOCKS])
def test_tested_block_runs(where, source, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", source], cwd=work, env=docs_env(tmp_path),
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where}: the block ran past {BLOCK_TIMEOUT_S} s; mark only fast commands as tested")
    assert done.returncode == 0, f"{where} failed (exit {done.returncode}):\n{source}\n--- stdout\n" \
                                 f"{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"


def test_recipe_keys_all_described():
    missing = reference_gen.undocumented_keys()
    assert not missing, ("recipe keys without a description (add Field(description=...) or a comment beside the "
                         f"field in danlu/recipe.py): {', '.join(missing)}")


def test_cli_reference_covers_every_verb():
    from danlu.cli import build_parser

    page = reference_gen.cli_reference()

    def walk(parser, prefix):
        for name, _, sub in reference_gen._subcommands(parser):
            assert f"`{prefix} {name}`" in page, f"{prefix} {name} missing from the CLI reference"
            walk(sub, f"{prefix} {name}")

    walk(build_parser(), "danlu")
    for flag in ("--resume RUN", "--api-key-file PATH", "--max-body-mb"):
        assert flag in page


def test_cli_reference_walks_nested_subcommands():
    """A verb with its own sub-commands (danlu runs show, ...) gets a section per sub-command, with its options."""
    import argparse

    p = argparse.ArgumentParser(prog="danlu")
    verbs = p.add_subparsers(dest="verb")
    runs = verbs.add_parser("runs", help="list runs")
    actions = runs.add_subparsers(dest="action")
    show = actions.add_parser("show", help="one run in full")
    show.add_argument("run", help="a run folder or name")
    show.add_argument("--json", action="store_true", help="one JSON object")
    page = reference_gen.cli_reference(p)
    assert "### `danlu runs`" in page and "#### `danlu runs show`" in page
    assert "one run in full" in page and "| `--json` |" in page and "a run folder or name" in page


def test_recipe_reference_has_every_key_and_model():
    from danlu.models.specs import MODELS
    from danlu.recipe import Recipe

    page = reference_gen.recipe_reference()
    for key in ("data.augment.shift", "train.privacy.epsilon", "train.lookahead.every", "tune.<key>.choices"):
        assert f"`{key}`" in page
    for name in MODELS:
        assert f"`{name}`" in page
    assert len(reference_gen.recipe_rows(Recipe)) > 60


def _slug(heading: str) -> str:
    return reference_gen._anchor(re.sub(r"[`*]", "", heading))


def test_readme_links_resolve():
    """README links are read on GitHub, outside the site build: each relative one must name a file (and heading)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert links
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README links to {link}, which does not exist"
        if anchor and target.suffix == ".md":
            headings = re.findall(r"^#+\s+(.*)$", target.read_text(encoding="utf-8"), re.M)
            assert anchor in {_slug(h) for h in headings}, f"README links to {link}: no such heading"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="mkdocs and mkdocs-material are not installed (make installs them from requirements.txt)")
def test_site_builds_strictly(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    for page in ("index.html", "reference/cli/index.html", "reference/recipe/index.html", "results/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
