"""MkDocs hooks: the reference pages are generated from the code at build time, never checked in.

- ``reference/cli.md`` walks ``danlu.cli.build_parser()`` (every verb, nested sub-commands included);
- ``reference/recipe.md`` walks the pydantic ``Recipe`` model (every key: type, default, constraints,
  description) and the model registry's option classes;
- ``results.md`` is ``benchmarks/RESULTS.md`` itself, so pages can link to the measurements;
- ``index.md`` (the home page) is ``README.md`` itself, its links re-pointed into the site.

The descriptions come from ``Field(description=...)`` when given, else from the comments beside (or just above)
each field in the source, which is where danlu keeps them. ``docs/reference_gen.py`` does the work; this module
only plugs it into MkDocs.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Document the checkout being built, not whatever danlu the environment has installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "docs") not in sys.path:
    sys.path.insert(0, str(ROOT / "docs"))

import reference_gen  # noqa: E402  (needs the paths above)
from mkdocs.structure.files import File, Files  # noqa: E402


def on_files(files: Files, config) -> Files:
    """Add the generated pages before MkDocs builds the nav and checks the links."""
    pages = {
        "reference/cli.md": reference_gen.cli_reference(),
        "reference/recipe.md": reference_gen.recipe_reference(),
        "results.md": reference_gen.results_page(ROOT / "benchmarks" / "RESULTS.md"),
        "index.md": reference_gen.home_page(ROOT / "README.md"),
    }
    for path, text in pages.items():
        files.append(File.generated(config, path, content=text))
    return files
