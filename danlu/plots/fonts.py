"""A CJK font for the figures: without one, Chinese class names were drawn as empty boxes.

matplotlib falls back along ``font.sans-serif`` glyph by glyph, so DejaVu Sans keeps drawing Latin text
and the first CJK font found draws the rest. Debian's fonts-noto-cjk (``make setup`` and .ci/run install
it) is looked for by file too: matplotlib's font cache, built before the package was installed, misses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
                "WenQuanYi Micro Hei", "Droid Sans Fallback")
CJK_FILES = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
             "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")


def cjk_family(font_manager: Any) -> str | None:
    """The first CJK family matplotlib can use, registering a known font file when its cache lacks it."""
    names = {f.name for f in font_manager.fontManager.ttflist}
    found = next((f for f in CJK_FAMILIES if f in names), None)
    if found:
        return found
    for path in CJK_FILES:
        if Path(path).is_file():
            try:
                font_manager.fontManager.addfont(path)
                bold = Path(path.replace("-Regular", "-Bold"))
                if bold != Path(path) and bold.is_file():  # titles are bold
                    font_manager.fontManager.addfont(str(bold))
            except (OSError, RuntimeError, ValueError):
                continue
            names = {f.name for f in font_manager.fontManager.ttflist}
            found = next((f for f in CJK_FAMILIES if f in names), None)
            if found:
                return found
    return None


_chosen: list[str | None] = []  # looked up once per process


def use_cjk_font(matplotlib: Any) -> str | None:
    """Put a CJK family after DejaVu Sans in ``font.sans-serif``; the family used, or None when none exists."""
    from matplotlib import font_manager

    if not _chosen:
        _chosen.append(cjk_family(font_manager))
    family = _chosen[0]
    if family:
        rest = [f for f in matplotlib.rcParams["font.sans-serif"] if f not in ("DejaVu Sans", family)]
        matplotlib.rcParams["font.sans-serif"] = ["DejaVu Sans", family, *rest]
        # a list of families, not "sans-serif": a generic name resolves to one font, with no fallback
        matplotlib.rcParams["font.family"] = ["DejaVu Sans", family, "sans-serif"]
    return family
