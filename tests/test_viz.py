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


def test_the_pipeline_diagram_names_the_modules_that_implement_each_box():
    from wrp.viz import pipeline_modules

    modules = pipeline_modules()  # looked up in the code, so a moved function moves its box's label
    assert modules == {"video": "wrp.synthetic", "clips": "wrp.data", "seg": "wrp.models",
                       "warp": "wrp.propagation", "cycle": "wrp.denoiser", "propagate": "wrp.policies",
                       "tables": "wrp.tables"}
    text = " ".join(t.get_text() for t in pipeline_diagram().axes[0].texts)
    assert all(module in text for module in modules.values())


def test_confusable_changes_sort_disagreements_on_look_alike_classes_by_who_is_right(tmp_path):
    from wrp.viz import confusable_changes, table_bars_figure, with_without_figure

    car, truck, bus, road, sky = 13, 14, 15, 0, 10
    truth = np.array([[car, truck, bus, road, road, 255]], dtype=np.uint8)
    base = np.array([[truck, truck, car, road, sky, car]], dtype=np.uint8)
    ref = np.array([[car, bus, truck, sky, road, truck]], dtype=np.uint8)
    change = confusable_changes(base, ref, truth)
    assert change["fixed"].tolist() == [[True, False, False, False, False, False]]
    assert change["broken"].tolist() == [[False, True, False, False, False, False]]
    assert change["both_wrong"].tolist() == [[False, False, True, False, False, False]]
    # road/sky disagreements are not look-alike classes; ignore pixels are never counted
    image = np.zeros((1, 6, 3), np.uint8)
    row = {"image": image, "truth": truth, "baseline": base, "refined": ref, "name": "x"}
    fig = with_without_figure([row])
    texts = [ax.get_title() for ax in fig.axes]
    assert "confusable classes: 1 px fixed, 1 broken" in texts
    bars = table_bars_figure({"A": {"baseline": [1.0, 2.0], "warp-refine": [3.0, 4.0]}}, title="t")
    assert save_figure(bars, tmp_path / "bars.png").stat().st_size > 0


def test_paired_gains_figure_draws_every_seed_of_every_world_with_its_interval(tmp_path):
    from wrp.tables import gains_over
    from wrp.viz import paired_gains_figure

    gains = {f"world {w}": gains_over({"baseline": [30.0, 31.0, 32.0],
                                       "warp-refine": [31.0 + w, 33.0 + w, 33.5 + w]}, "baseline")
             for w in (0, 1)}
    fig = paired_gains_figure(gains, "Baseline", title="t", target=1.5)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["world 0: warp-refine", "world 1: warp-refine"]
    dots = [c for c in ax.collections if len(c.get_offsets()) == 3]  # one dot per seed, per world
    assert sorted(dots[1].get_offsets()[:, 0].tolist()) == [2.0, 2.5, 3.0]
    assert save_figure(fig, tmp_path / "gains.png").stat().st_size > 0


def test_a_rows_gain_is_drawn_in_the_colour_of_its_bar():
    """Rows without a policy colour (Table 2's) keep their bar's colour in the gains panel, though
    the reference has a bar and no gain."""
    from matplotlib.colors import to_hex

    from wrp.tables import gains_over
    from wrp.viz import table_bars_figure

    results = {"under-trained": [20.0, 21.0], "B": [30.0, 31.0], "B + RLL": [29.0, 30.5]}
    fig = table_bars_figure({"A": results}, title="t", gains={"A": gains_over(results, "B")}, reference="B")
    bars, panel = fig.axes
    bar_colour = {label.get_text().replace("\n", " "): to_hex(patch.get_facecolor())
                  for label, patch in zip(bars.get_xticklabels(), bars.patches, strict=True)}
    interval_colour = [to_hex(line.get_color()) for line in panel.lines if len(line.get_xdata()) == 2
                       and line.get_ydata()[0] == line.get_ydata()[1]]
    assert interval_colour == [bar_colour["under-trained"], bar_colour["B + RLL"]]
