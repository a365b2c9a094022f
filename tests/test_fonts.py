"""Chinese class names are drawn with a CJK font: no missing-glyph warning from matplotlib."""

from __future__ import annotations

import os
import warnings

import pytest

from danlu.plots import figures as plots
from danlu.plots.fonts import use_cjk_font

CLASSES = ["正面", "负面", "中性"]
CM = [[5, 1, 0], [2, 7, 1], [0, 1, 4]]


def missing_glyphs(caught) -> list[str]:
    return [str(w.message) for w in caught if "missing from" in str(w.message) and "Glyph" in str(w.message)]


def test_confusion_matrix_with_chinese_labels_has_every_glyph(tmp_path, monkeypatch):
    plt = plots.pyplot()
    import matplotlib

    if use_cjk_font(matplotlib) is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no CJK font: .ci/run installs fonts-noto-cjk")
        pytest.skip("no CJK font installed (apt-get install fonts-noto-cjk)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.confusion_matrix(CM, CLASSES, tmp_path / "cm.png")
    assert missing_glyphs(caught) == []
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    # the check can fail: with the Latin font alone the same figure misses the glyphs
    monkeypatch.setattr("danlu.plots.fonts._chosen", [None])
    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}), warnings.catch_warnings(record=True) as bare:
        warnings.simplefilter("always")
        plots.confusion_matrix(CM, ["甲类", "乙类", "丙类"], tmp_path / "bare.png")  # glyphs not yet warned about
    assert missing_glyphs(bare)
    plt.close("all")
