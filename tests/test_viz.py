"""Palette and figures shared by notebooks and figures/."""

from __future__ import annotations

import numpy as np
import pytest

from wrp.viz import colorize, pipeline_diagram, save_figure


def test_palette_uses_the_official_cityscapes_colours():
    train = colorize(np.array([[0, 13, 255]], dtype=np.uint8))  # road, car, ignore
    assert train[0].tolist() == [[128, 64, 128], [0, 0, 142], [0, 0, 0]]
    label = colorize(np.array([[7, 26]]), ids="label")  # road, car as official label ids
    assert label[0].tolist() == [[128, 64, 128], [0, 0, 142]]


def test_colorize_refuses_what_is_not_a_label_map():
    with pytest.raises(ValueError, match="expects an \\(H, W\\) label map"):
        colorize(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="0..255"):
        colorize(np.array([[300]]))


def test_pipeline_diagram_names_every_stage_and_saves_a_png(tmp_path):
    fig = pipeline_diagram()
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    for notebook in ("· 01", "· 02", "· 03", "04 Table 1", "05 Table 2"):
        assert notebook in text
    path = save_figure(fig, tmp_path / "pipeline.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
