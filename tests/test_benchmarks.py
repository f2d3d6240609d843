"""The reports the benchmarks write, from measurements laid out as the benchmarks store them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assessed(folder: Path, rho: dict[str, float], ece: dict[str, float]) -> None:
    folder.mkdir(parents=True)
    keep = {"distance": 10, "threshold": 1.0, "kept": {"coverage": 97.0, "accuracy": 96.0},
            "all": {"coverage": 100.0, "accuracy": 95.0}}
    policies = {p: {"spearman": rho[p], "ece": ece[p], "keep_90_at_k": keep} for p in rho}
    (folder / "assess.json").write_text(json.dumps({"config": {}, "policies": policies}))


def test_the_quality_report_gives_every_seed_and_the_median_per_world(tmp_path):
    quality = _benchmark("quality")
    for seed, (m, w) in enumerate([(0.80, 0.90), (0.70, 0.95), (0.90, 0.85)]):
        _assessed(tmp_path / "seeds" / f"street_s{seed}", {"motion-only": m, "warp-refine": w},
                  {"motion-only": 7.0, "warp-refine": 2.0 + seed})
    text = quality.write_summary(tmp_path).read_text()
    assert "| street | 1 | motion-only | 0.70 | 7.0 % | 1 | 97.0 % | 95.0 → 96.0 % |" in text
    assert "| street | warp-refine | 0, 1, 2 | 0.90 | 0.85 | 3.0 % |" in text
    medians = json.loads((tmp_path / "seeds.json").read_text())["medians"]["street"]
    assert medians["motion-only"]["min_spearman"] == pytest.approx(0.70)


def test_the_regime_report_lists_the_ceiling_with_its_paired_interval(tmp_path):
    regimes = _benchmark("true_labels")
    record = {"regime": {"profile": "demo", "style": "street", "world_fps": 10.0, "train_records": 20,
                         "partitions_per_record": 2, "k": 10, "arch": "DeepLabV3", "cell_iters": 400,
                         "cell_crop": [64, 128], "world_seed": 0, "eval_frames": "every",
                         "min_confidence": 1.0, "dataset": None},
              "seeds": [0, 1, 2], "labelled_frames": 40,
              "cells": {"baseline": [30.0, 31.0, 32.0], "true-labels": [32.0, 33.5, 34.0]},
              "gains": [{"column": "true-labels", "gain": 2.17, "paired_ci95": [0.74, 3.6]}],
              "neighbour_change": {"1": 9.5, "10": 38.8}, "seconds": 1800.0}
    (tmp_path / "regimes").mkdir()
    (tmp_path / "regimes" / "a.json").write_text(json.dumps(record))
    pretrained = {**record, "regime": {**record["regime"], "pretrain": "verge"}}
    (tmp_path / "regimes" / "b.json").write_text(json.dumps(pretrained))
    scratch, warm = regimes.write_summary(tmp_path).read_text().splitlines()[-2:]
    assert scratch.startswith("| 10 | 40 (20 × 2) | ±10 (1.00 s) | 38.8 % | DeepLabV3, from scratch | "
                              "400 × 64×128 | every frame |")
    assert "| world 0, training seeds: 0, 1, 2 | 31.00 ± 1.00 | +2.17 [+0.74, +3.60] | — | 30 |" in scratch
    assert "| DeepLabV3, pretrained on verge | 400 × 64×128 |" in warm
    taught = {**record, "regime": {**record["regime"], "cell_iters": 1200, "teacher_pretrain": "verge"}}
    (tmp_path / "regimes" / "t.json").write_text(json.dumps(taught))
    assert "| DeepLabV3, from scratch; g_ψ pretrained on verge | 1200 × 64×128 |" in (
        regimes.write_summary(tmp_path).read_text())
    (tmp_path / "regimes" / "t.json").unlink()
    regime = {**pretrained["regime"], "pretrain_labels": "categories", "world_density": 2.0}
    coarse = {**pretrained, "regime": regime,
              "score_world": {"seed": 7, "frames": 1176,
                              "cells": {"baseline": [29.0, 30.0, 31.0], "true-labels": [29.5, 30.0, 31.1]},
                              "gains": [{"column": "true-labels", "gain": 0.2, "paired_ci95": [-0.4, 0.8]}]}}
    (tmp_path / "regimes" / "c.json").write_text(json.dumps(coarse))
    lines = regimes.write_summary(tmp_path).read_text().splitlines()
    (row,) = [line for line in lines if "categories" in line]
    assert row.startswith("| 10, 2× traffic | 40 (20 × 2) |")
    assert "DeepLabV3, pretrained on verge categories |" in row
    assert "| scored on world 7 (1176 frames): Baseline 30.00, true-labels +0.20 [-0.40, +0.80] | 30 |" in row
    assert "Per class on the scoring world" not in "\n".join(lines), "no per-class table without its scores"
    coarse["score_world"]["per_class"] = {"baseline": {"road": 90.2, "truck": 10.0},
                                          "true-labels": {"road": 90.0, "truck": 14.6},
                                          "warp-refine": {"road": 91.0}}
    (tmp_path / "regimes" / "c.json").write_text(json.dumps(coarse))
    text = regimes.write_summary(tmp_path).read_text()
    assert ("on world 7: Baseline (true-labels / warp-refine) |" in text
            and "| road | 90 (+0 / +1) |" in text and "| truck | 10 (+5 / —) |" in text)


def test_the_gpu_smoke_report_reads_its_json_and_stages_go_to_an_empty_folder(tmp_path, monkeypatch):
    smoke = _benchmark("gpu_smoke")
    result = {"gpu": "G", "torch": "T", "sweep": [],
              "throughput": [{"arch": "ocrnet", "images_per_s": 108.65, "peak_memory_gib": 12.79}],
              "engine": {"seconds": 12.5, "miou": 0.6},
              "same_seed": {"iters": 200, "runs": [{"miou": 23.97}, {"miou": 23.26}], "max_weight_diff": 0.5}}
    text = smoke.table(result)
    assert "ocrnet" in text and "108.7" in text and "12.79" in text
    assert "mIoU 23.97 / 23.26, largest weight difference 0.5" in text
    monkeypatch.setenv("WRP_RUNS", str(tmp_path))
    with smoke.fresh_runs_dir():
        inside = Path(smoke.os.environ["WRP_RUNS"])
        assert inside != tmp_path and inside.is_dir() and not any(inside.iterdir())
    assert smoke.os.environ["WRP_RUNS"] == str(tmp_path) and not inside.exists()


def test_a_regime_scores_its_cells_on_every_frame_of_another_world(isolated_runs):
    from wrp.profiles import Run
    from wrp.stages import PRETRAIN_SEED

    regimes = _benchmark("true_labels")
    run = Run.create("smoke", progress=False, table_world_seed=0, table_iters=1, table_crop=(32, 64))
    there = regimes.score_on_world(run, "DeepLabV3", ["baseline", "true-labels"], [0, 1], None, 2)
    frames = 3 * 9  # the smoke world: 3 records of one 9-frame partition, every frame scored
    assert there["seed"] == 2 and there["frames"] == frames
    assert [len(v) for v in there["cells"].values()] == [2, 2]
    assert [g["column"] for g in there["gains"]] == ["true-labels"]
    assert sorted(there["per_class"]) == ["baseline", "true-labels"]
    assert "road" in there["per_class"]["baseline"]
    cells = list((isolated_runs / "stages" / "segmenter").iterdir())
    assert len(cells) == 4, "the regime's own cells, trained once"
    for world, role in ((0, "a world the cells train on"), (PRETRAIN_SEED, "the world pretraining reads")):
        with pytest.raises(ValueError, match=f"score world {world} is {role}"):
            regimes.score_on_world(run, "DeepLabV3", ["baseline"], [0], None, world)
    assert len(list((isolated_runs / "stages" / "segmenter-score").iterdir())) == 4, \
        "each cell's score on the world is a cached stage, the one `wrp table1` reads"
    anywhere = run.with_profile(table_world_seed=None)
    with pytest.raises(ValueError, match="--score-world needs the one world every cell trains on"):
        regimes.score_on_world(anywhere, "DeepLabV3", ["baseline"], [0], None, 7)


def test_the_cues_compare_warp_refine_with_the_teacher_alone_at_every_distance(isolated_runs):
    from wrp.profiles import Run

    regimes = _benchmark("true_labels")
    run = Run.create("smoke", seed=0, progress=False, table_world_seed=1)
    asked = []

    def pairs(run, policy, k):
        asked.append(run.seed)
        return generated_pairs(run, policy, k)

    generated_pairs, regimes.generated_pairs = regimes.generated_pairs, pairs
    cues = regimes.cue_headroom(run, None)
    assert set(asked) == {1}, "the labels of the regime's world, not of the run's seed"
    assert list(cues) == [str(d) for d in range(1, run.profile.k + 1)]
    for c in cues.values():
        assert max(c["warp_refine_right"], c["semantic_right"]) <= c["either_right"] <= 100
        assert all(0 <= c[f"miou_{name}"] <= 100 for name in ("warp_refine", "semantic", "better_of_two"))
    assert list(regimes.cue_headroom(run, 2)) == ["1", "2"]
    with pytest.raises(ValueError, match="--cues needs the one world every cell trains on"):
        regimes.cue_headroom(run.with_profile(table_world_seed=None), None)


def test_a_regime_scores_its_cells_on_the_records_they_train_on(isolated_runs):
    from wrp.profiles import Run
    from wrp.stages import every_frame_samples

    regimes = _benchmark("true_labels")
    run = Run.create("smoke", progress=False, table_world_seed=0, table_iters=1, table_crop=(32, 64))
    fit = regimes.score_fit(run, "DeepLabV3", ["baseline", "true-labels"], [0], None)
    partitions = run.profile.train_records * run.profile.partitions_per_record
    frames = partitions * run.profile.partition_length
    assert fit["frames"] == {"labelled": partitions, "unlabelled": frames - partitions}
    assert {part: sorted(cells) for part, cells in fit["cells"].items()} == {
        "labelled": ["baseline", "true-labels"], "unlabelled": ["baseline", "true-labels"]}
    assert all(0 <= v[0] <= 100 for cells in fit["cells"].values() for v in cells.values())
    assert set(fit["per_class"]) == {"labelled", "unlabelled", "held-out"}
    assert "road" in fit["per_class"]["held-out"]["baseline"]
    with pytest.raises(ValueError, match="must be 'every', 'labelled' or 'unlabelled'"):
        every_frame_samples(run, ("train",), frames="human")
    with pytest.raises(ValueError, match="--fit needs the one world every cell trains on"):
        regimes.score_fit(run.with_profile(table_world_seed=None), "DeepLabV3", ["baseline"], [0], None)


def test_the_regime_report_says_how_well_the_students_fit(tmp_path):
    regimes = _benchmark("true_labels")
    regime = {"profile": "table", "style": "street", "world_fps": 10.0, "train_records": 20,
              "partitions_per_record": 2, "k": 10, "arch": "DeepLabV3", "cell_iters": 400,
              "cell_crop": [64, 128], "world_seed": 0, "eval_frames": "every", "min_confidence": 1.0,
              "dataset": None, "pretrain": "verge"}
    record = {"regime": regime, "seeds": [0, 1], "labelled_frames": 40,
              "cells": {"baseline": [30.0, 32.0], "true-labels": [31.0, 33.0]},
              "gains": [{"column": "true-labels", "gain": 1.0, "paired_ci95": [-1.0, 3.0]}],
              "neighbour_change": {"1": 9.5, "10": 38.8}, "seconds": 600.0}
    (tmp_path / "regimes").mkdir()
    (tmp_path / "regimes" / "a.json").write_text(json.dumps(record))
    assert "Do the students fit" not in regimes.write_summary(tmp_path).read_text()
    record["fit"] = {"frames": {"labelled": 40, "unlabelled": 800},
                     "cells": {"labelled": {"baseline": [34.0, 36.0], "true-labels": [33.0, 33.0]},
                               "unlabelled": {"baseline": [33.0, 33.0], "true-labels": [34.0, 35.0]}}}
    (tmp_path / "regimes" / "a.json").write_text(json.dumps(record))
    text = regimes.write_summary(tmp_path).read_text()
    assert "## Do the students fit what they learn from?" in text
    assert ("| 10 frames/s, DeepLabV3, pretrained on verge, 400 × 64×128, world 0 | 40 / 800 | "
            "35.00 / 33.00 / 31.00 | 33.00 / 34.50 / 32.00 | +1.50 |") in text
    assert "| class |" not in text, "no per-class table without per-class scores"
    record["fit"]["per_class"] = {
        "labelled": {"baseline": {"road": 95.0, "truck": 82.6}, "true-labels": {"road": 94.0, "truck": 70.0}},
        "held-out": {"baseline": {"road": 91.7, "truck": 4.9}, "true-labels": {"road": 92.0, "truck": 7.0}}}
    (tmp_path / "regimes" / "a.json").write_text(json.dumps(record))
    text = regimes.write_summary(tmp_path).read_text()
    assert "| class | 40 labelled, DeepLabV3, pretrained on verge, 400 it, world 0 |" in text
    assert "| road | 95 → 92 (+0) |" in text and "| truck | 83 → 5 (+2) |" in text


def test_the_generalisation_benchmark_measures_the_refit_against_the_chosen_omega(isolated_runs):
    """One world and seed at the smoke profile: the record holds warp-refine, Ω alone and warp-refine
    before the refit, says which way of choosing Ω made it, and records of two ways are refused
    one report."""
    from wrp.profiles import Run
    from wrp.stages import REFINEMENT_VERSION

    generalisation = _benchmark("generalisation")
    record = generalisation.measure(Run.create("smoke", device="cpu", progress=False), "street")
    policies = {row["policy"] for row in record["accuracy"]}
    assert {"motion-only", "warp-refine", generalisation.ALONE, generalisation.BEFORE_REFIT} <= policies
    assert record["refinement_version"] == REFINEMENT_VERSION
    assert record["stages"]["refit"] != record["stages"]["denoiser"]
    assert set(record["omega"]["held_out_before_refit"]) == set(record["omega"]["held_out"])
    (summary,) = generalisation.summarise([record]).values()
    assert generalisation.BEFORE_REFIT in summary["policies"]
    older = {**record, "seed": 1, "refinement_version": 2}
    assert generalisation.check_versions([record]) is None
    message = generalisation.check_versions([record, older])
    assert "refinement version 2: street_s1" in message
    assert f"refinement version {REFINEMENT_VERSION}: street_s0" in message


def test_the_label_errors_of_a_world_by_distance_band(isolated_runs):
    from wrp.profiles import Run

    errors_module = _benchmark("label_errors")
    run = Run.create("smoke", seed=1, progress=False)
    k = run.profile.k
    assert errors_module.bands_of([1, k], k) == [(1, 1), (2, k)]
    for bad in ([k - 1], [2, 1, k], [0, k]):
        with pytest.raises(ValueError, match="--bands"):
            errors_module.bands_of(bad, k)
    errors = errors_module.errors_by_band(run, ["warp-refine", "motion-only"], [(1, 1), (2, k)])
    assert list(errors) == ["warp-refine", "motion-only"]
    for by_band in errors.values():
        assert list(by_band) == ["d1-1", f"d2-{k}"]
        for rows in by_band.values():
            assert rows and all(0 <= r["recall"] <= 100 for r in rows)
    markdown = errors_module.errors_markdown(errors, "smoke")
    assert "## warp-refine" in markdown and "## motion-only" in markdown
    assert "mIoU of the labels" in markdown
    assert errors_module.band_miou([{"iou": 50.0}, {"iou": 0.0}]) == pytest.approx(25.0)
    for r in errors["warp-refine"]["d1-1"]:  # a class's IoU is at most its recall and its precision
        assert r["iou"] <= r["recall"] + 0.05 and not r["iou"] > r["precision"] + 0.05
    def rows(pixels):
        return errors_module.errors_by_band(run, ["warp-refine"], [(1, k)], pixels)["warp-refine"][f"d1-{k}"]

    new = rows("new")
    every = {r["class"]: r["pixels"] for r in rows("all")}
    split = {}
    for r in new + rows("seen"):
        split[r["class"]] = split.get(r["class"], 0) + r["pixels"]
    assert split == every and sum(r["pixels"] for r in new) > 0
    fig = errors_module.errors_figure(errors, "smoke")
    assert len(fig.axes[0].texts) == len({r["class"] for b in errors.values() for rows in b.values()
                                          for r in rows}) * 4


def test_variants_of_warp_refine_labels_train_paired_cells(isolated_runs, monkeypatch, capsys):
    import sys

    import numpy as np

    from wrp.data import IGNORE_INDEX, read_label
    from wrp.policies import label_file
    from wrp.profiles import Run
    from wrp.stages import generated_frames, generated_pairs, train_denoiser, training_labels

    variants = _benchmark("label_variants")
    run = Run.create("smoke", seed=1, progress=False)
    manifest, frames = generated_frames(run)
    truth = manifest.ground_truth("train")
    source = training_labels(run, "warp-refine") / "labels"
    semantic = training_labels(run, "semantic-only") / "labels"
    built = {v: variants.variant_labels(run, v) for v in variants.VARIANTS}
    for variant, (_, share) in built.items():
        assert share["right"] <= share["labelled"] <= 100.0, variant
    assert built["ungated"][1]["labelled"] == 100.0  # Ω labels every pixel
    assert built["oracle"][1]["right"] == built["oracle"][1]["labelled"] < 100.0  # what is left is right
    assert built["true-motion"][1]["labelled"] == 100.0
    # Ω with g_ψ's label in its input where the motion fails, trained on cyclic labels inpainted so
    assert built["semantic-inpaint"][1]["labelled"] == 100.0
    config = json.loads((built["semantic-inpaint"][0] / "config.json").read_text())
    assert config["denoiser"] == str(train_denoiser(run, inpaint="semantic")) != str(train_denoiser(run))
    # … which is what a run of the profile field inpaint="semantic" (wrp … --inpaint semantic) labels with
    semantic_run = run.with_profile(inpaint="semantic")
    assert str(train_denoiser(semantic_run)) == config["denoiser"]
    assert training_labels(semantic_run, "semantic-only") == training_labels(run, "semantic-only"), \
        "only warp-refine's labels depend on what Ω reads: the other columns' cells are shared"
    user_path = training_labels(semantic_run, "warp-refine") / "labels"
    for clip, pos in frames[:4]:
        np.testing.assert_array_equal(
            read_label(label_file(user_path, "warp-refine", clip.frames[pos])),
            read_label(label_file(built["semantic-inpaint"][0] / "labels", "warp-refine", clip.frames[pos])))
    moved = 0
    for clip, pos in frames:
        frame = clip.frames[pos]
        wr = read_label(label_file(source, "warp-refine", frame))
        true_motion = read_label(label_file(built["true-motion"][0] / "labels", "warp-refine", frame))
        moved += int((true_motion != wr).sum())
        agree = read_label(label_file(built["agree"][0] / "labels", "warp-refine", frame))
        kept = agree != IGNORE_INDEX
        np.testing.assert_array_equal(agree[kept], wr[kept])
        assert (wr[~kept] != read_label(label_file(semantic, "semantic-only", frame))[~kept]).all()
        oracle = read_label(label_file(built["oracle"][0] / "labels", "warp-refine", frame))
        kept = oracle != IGNORE_INDEX
        np.testing.assert_array_equal(oracle[kept], truth.label(clip.clip_id, pos)[kept])
    assert moved > 0  # relabelled with the world's motion, not a copy of DIS's labels
    # the true labels' lead split in two: where the world's motion follows the point from the labelled
    # frame (perfect carrying) and where it does not (perfect labels of what comes into view)
    assert built["true-followed"][1]["followed"] == built["true-unfollowed"][1]["followed"] < 100.0
    for clip in {clip.clip_id: clip for clip, _ in frames}.values():
        masks = variants.followed(clip, run.profile.k)
        seen = clip.true_flow(clip.labelled + 1, "backward")[1]
        np.testing.assert_array_equal(masks[clip.labelled + 1], seen)  # one step: what both frames show
        assert masks[clip.labelled + 2].sum() <= seen.sum()
        for pos in (clip.labelled - 1, clip.labelled + 2):
            frame, true = clip.frames[pos], truth.label(clip.clip_id, pos)
            wr = read_label(label_file(source, "warp-refine", frame))
            mask = masks[pos]
            teacher = read_label(label_file(semantic, "semantic-only", frame))
            for name, other, side in (("true-followed", true, mask), ("true-unfollowed", true, ~mask),
                                      ("teacher-unfollowed", teacher, ~mask)):
                ids = read_label(label_file(built[name][0] / "labels", "warp-refine", frame))
                np.testing.assert_array_equal(ids[side], other[side])
                np.testing.assert_array_equal(ids[~side], wr[~side])
    split = variants.split_shares(run, {name: built[name][0] for name in variants.SPLIT})
    assert split["true-followed"]["right_followed"] == split["true-unfollowed"]["right_new"] == 100.0
    assert split["teacher-unfollowed"]["teacher_new"] == 100.0  # g_ψ's own label where it came into view
    assert split["true-unfollowed"]["right_followed"] == split["teacher-unfollowed"]["right_followed"]
    far = {name: variants.far_label_miou(run, built[name][0])
           for name in ("true-followed", "true-unfollowed")}
    source_far = variants.far_label_miou(run, source.parent)
    assert all(source_far <= value <= 100.0 for value in far.values())  # right labels only raise an IoU
    with pytest.raises(ValueError, match="variant"):
        variants.variant_labels(run, "filtered")
    # a cell trains on a variant's files, paired with the table's own cells
    (row,) = variants.variant_rows(run, "DeepLabV3", {"oracle": built["oracle"][0]}, [0], world=1)
    assert row["policy"] == "oracle" and row["seed"] == 0 and 0 <= row["miou"] <= 100
    pairs = generated_pairs(run, "warp-refine", labels=built["oracle"][0])
    assert all(str(built["oracle"][0]) in label for _, label in pairs)
    first = Path(pairs[0][1])
    first.unlink()
    with pytest.raises(FileNotFoundError, match="build it again"):
        generated_pairs(run, "warp-refine", labels=built["oracle"][0])
    gain = {"column": "oracle", "gain": row["miou"] - 30.0, "paired_ci95": None}
    markdown = variants.variants_markdown("smoke", {"baseline": [30.0], "oracle": [row["miou"]]}, [gain],
                                          {"oracle": built["oracle"][1] | {"far_miou": 61.3}}, [0])
    assert "| oracle |" in markdown and "| over Baseline | mean gain" in markdown
    assert markdown.count("| 61.3 |") == 1  # the label mIoU far from the labelled frame
    assert f"| oracle | {row['miou'] - 30.0:+.2f} |" in markdown  # its gain, in the gains table
    figure = variants.variants_figure(isolated_runs / "variants.png", "smoke",
                                      [{**gain, "per_seed": [gain["gain"]]}])
    assert figure.stat().st_size > 0
    # options of wrp table1 that this benchmark has no use for are refused, not ignored
    monkeypatch.setattr(sys, "argv", ["label_variants.py", "--profile", "smoke", "--world-seed", "1",
                                      "--policy", "motion-only"])
    with pytest.raises(SystemExit):
        variants.main()
    assert "--policy: the columns here are" in capsys.readouterr().err


def test_one_warp_is_scored_on_the_pixels_both_frames_show_and_the_others(isolated_runs, monkeypatch, capsys):
    import json
    import sys

    from wrp.profiles import Run
    from wrp.stages import generated_frames

    carry = _benchmark("flow_carry")
    run = Run.create("smoke", seed=1, progress=False)
    manifest, frames = generated_frames(run)
    clips = manifest.clips("train")
    pairs = carry.neighbour_pairs(frames)
    assert [(c.clip_id, t) for c, _, t in pairs] == [(c.clip_id, p) for c, p in frames]  # one step onto each
    assert all(abs(s - c.labelled) < abs(t - c.labelled) == abs(s - c.labelled) + 1 for c, s, t in pairs)
    truth = manifest.ground_truth("train")
    counts = {flow: carry.carry_counts(pairs, truth, flow) for flow in ("dis", "true")}
    height, width = truth.label(clips[0].clip_id, 0).shape
    for c in counts.values():
        assert c["seen"] + c["unseen"] == len(pairs) * height * width
        assert c["seen_right"] <= c["seen"] and c["unseen_right"] <= c["unseen"]
        assert c["unseen_flagged"] <= min(c["flagged"], c["unseen"])
    assert counts["dis"]["unseen"] == counts["true"]["unseen"] > 0  # the world decides what is seen
    true = carry.shares(counts["true"])
    assert true["seen_right"] == 100.0  # the world's own motion carries every point both frames show
    out = isolated_runs / "carry"
    monkeypatch.setattr(sys, "argv", ["flow_carry.py", "--profile", "smoke", "--world-seed", "1",
                                      "--flow", "true", "--no-progress", "--out", str(out)])
    carry.main()
    (written,) = out.glob("*.json")
    assert json.loads(written.read_text())["shares"]["true"] == true
    assert written.with_suffix(".png").stat().st_size > 0  # what came into view, drawn
    fig = carry.came_into_view_figure(clips[0], run.profile.k, "smoke")
    assert len(fig.axes) == 1 + len({1, run.profile.k // 2, run.profile.k})  # the labelled frame and three
    assert "| true | " in capsys.readouterr().out


def test_cells_are_timed_one_after_another_and_side_by_side_on_fresh_seeds(isolated_runs, monkeypatch):
    import sys

    out = isolated_runs / "jobs"
    monkeypatch.setattr(sys, "argv", ["cell_jobs.py", "--profile", "smoke", "--cell-iters", "1",
                                      "--cells", "2", "--jobs", "1", "--jobs", "2", "--repeats", "1",
                                      "--no-progress", "--out", str(out)])
    _benchmark("cell_jobs").main()
    result = json.loads((out / "cell_jobs.json").read_text())
    assert [r["jobs"] for r in result["rows"]] == [1, 2] and result["rows"][0]["speedup"] == 1.0
    assert all(r["seconds"] > 0 and r["images_per_s"] > 0 for r in result["rows"])
    cells = list((isolated_runs / "stages" / "segmenter").glob("*/stage.json"))
    assert len(cells) == 4, "every measurement trains cells of its own seeds, none read back"
    assert "| 2 |" in (out / "cell_jobs.md").read_text()
