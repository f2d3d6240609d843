"""Profiles: valid presets, overrides that are checked, and a comparison table."""

from __future__ import annotations

import dataclasses

import pytest

from wrp.profiles import PROFILES, Profile, get_profile, profiles_table


def test_presets_are_ordered_by_size():
    smoke, demo, paper = (PROFILES[n] for n in ("smoke", "demo", "paper"))
    for field in ("height", "width", "train_records", "seg_iters", "denoiser_iters"):
        assert getattr(smoke, field) < getattr(demo, field) < getattr(paper, field), field
    assert demo.height >= 128 and demo.width >= 256
    assert paper.partition_length == 21 and paper.k == 10 and paper.labelled_index == 10
    # 175 epochs of Cityscapes' 2975 training frames at batch 8 (supplementary 3.1)
    assert paper.seg_iters == paper.table_iters == round(175 * paper.train_records / paper.batch_size, -3)


def test_overrides_return_a_copy_and_unknown_fields_are_refused():
    demo = get_profile("demo", seg_iters=50)
    assert demo.seg_iters == 50 and PROFILES["demo"].seg_iters != 50
    with pytest.raises(ValueError, match="unknown profile field.*seg_iter"):
        get_profile("demo", seg_iter=50)
    with pytest.raises(ValueError, match="unknown profile 'fast'; choose one of: smoke, demo, table, paper"):
        get_profile("fast")


def test_inconsistent_sizes_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="k=6 needs partitions of at least 2k\\+1=13 frames"):
        get_profile("smoke", k=6)
    with pytest.raises(ValueError, match="partition_length=8 must be odd"):
        get_profile("smoke", partition_length=8)
    with pytest.raises(ValueError, match="height=0 must be ≥ 1"):
        get_profile("smoke", height=0)


def test_profiles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["demo"].height = 1  # type: ignore[misc]


def test_table_has_a_row_per_field_and_a_column_per_profile():
    table = profiles_table()
    lines = table.splitlines()
    assert lines[0] == "| field | smoke | demo | table | paper |"
    assert len(lines) == 2 + len(dataclasses.fields(Profile)) - 1


def test_a_slow_machine_gets_a_slow_demo_not_a_failed_one():
    """Training cells take what a machine needs: no per-cell time limit at demo and paper (every
    stage resumes anyway); smoke keeps one, for CI."""
    from wrp.profiles import PROFILES

    assert PROFILES["demo"].cell_timeout_s is None and PROFILES["paper"].cell_timeout_s is None
    assert PROFILES["smoke"].cell_timeout_s


def test_the_table_profile_is_the_demo_at_10_frames_per_second_with_the_table_protocol():
    demo, table = PROFILES["demo"], PROFILES["table"]
    changed = {f for f in demo.as_dict() if demo.as_dict()[f] != table.as_dict()[f]}
    assert changed == {"name", "description", "fps", "partitions_per_record", "table_seeds", "table_iters",
                       "table_eval", "table_world_seed", "table_score_world", "teacher_pretrain",
                       "publishes_tables"}, "g_ψ's and Ω's recipes and the frame size are the demo's"
    assert table.fps == 10.0 and len(table.table_seeds) >= 5 and table.table_world_seed is not None
    assert table.table_eval == "every" and table.teacher_pretrain == "verge" and table.table_pretrain is None
    assert table.table_score_world not in (None, table.table_world_seed)


def test_a_score_world_needs_every_frame_scored_and_another_world_than_the_cells_train_on():
    with pytest.raises(ValueError, match="set table_eval='every'"):
        get_profile("table", table_eval="labelled")
    with pytest.raises(ValueError, match="is the world the cells train on"):
        get_profile("table", table_world_seed=7)
    assert get_profile("table", table_eval="labelled", table_score_world=None).table_eval == "labelled"


def test_what_omegas_input_holds_where_the_motion_fails_is_a_profile_field_every_command_sets():
    from wrp.cli import _run, build_parser

    assert PROFILES["table"].inpaint == PROFILES["demo"].inpaint == "motion"
    with pytest.raises(ValueError, match="inpaint='teacher' must be one of motion, semantic"):
        get_profile("smoke", inpaint="teacher")
    # results named by a profile's settings before the field existed keep their names at its default
    table = PROFILES["table"]
    assert table.key_dict() == {k: v for k, v in table.as_dict().items() if k != "inpaint"}
    assert get_profile("table", inpaint="semantic").key_dict()["inpaint"] == "semantic"
    for command in (["train-denoiser"], ["propagate"], ["assess"], ["table1"], ["table2"]):
        args = build_parser().parse_args([*command, "--profile", "table", "--inpaint", "semantic"])
        assert _run(args).profile.inpaint == "semantic", command
        assert _run(build_parser().parse_args([*command, "--profile", "table"])).profile.inpaint == "motion"


def test_the_published_tables_come_from_the_table_profile_not_the_demos_reduced_grid():
    """figures/table{1,2}.* are the table profile's (or the paper's) full grid; make demo's one-seed,
    50-iteration grid writes its tables under runs/demo/figures and never replaces them."""
    from wrp.runtime import project_root, runs_dir

    assert PROFILES["table"].tables_dir == PROFILES["paper"].tables_dir == project_root() / "figures"
    assert PROFILES["demo"].tables_dir == runs_dir() / "demo" / "figures"
    assert PROFILES["demo"].figures_dir == project_root() / "figures"  # its other figures stay published
    assert PROFILES["smoke"].tables_dir == PROFILES["smoke"].figures_dir
