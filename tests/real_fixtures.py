"""Tiny downloads in each real dataset's own layout, built in code (no binary data in git).

Each function writes, under a folder you give it, what a user has after downloading (and, where
the dataset ships zips, optionally without extracting) Cityscapes, ApolloScape, KITTI or NYU-V2 —
with frames of 16×32 pixels instead of megapixels, and a few deliberate gaps so the scripts'
reports of missing files have something to report. File names, folder nesting and the encodings of
label files follow the official releases:

- Cityscapes: ``leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` (30-frame
  snippets, frame 19 labelled) and ``gtFine/<split>/<city>/…_gtFine_{labelIds,color,instanceIds}.png``
  + ``…_polygons.json``; zips ``leftImg8bit_sequence_trainvaltest.zip``, ``gtFine_trainvaltest.zip``.
- ApolloScape scene parsing: ``road0X_ins/ColorImage/RecordNNN/Camera 5/<date>_<time>_Camera_5.jpg``
  and ``road0X_ins/Label/RecordNNN/Camera 5/…_Camera_5_bin.png`` (ApolloScape class ids).
- KITTI: ``data_semantics`` (``training/image_2/<scene>_10.png``, ``training/semantic/<scene>_10.png``
  in Cityscapes label ids) and the stereo 2015 multi-view extension
  ``data_scene_flow_multiview`` (``training/image_2/<scene>_00.png`` … ``_20.png``).
- NYU-V2: raw scene folders (``<scene>/r-<timestamp>-<n>.ppm`` with depth ``d-….pgm`` and
  ``INDEX.txt``), the labelled set (``nyu_depth_v2_labeled.mat`` when h5py is installed, else the
  unpacked folder ``rgb/``, ``labels/``, ``rawRgbFilenames.txt``) and a 894 → 40 mapping text file.

Run ``python tests/real_fixtures.py /tmp/wrp-fixtures`` to build all of them in one folder.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

H, W = 16, 32
CITYSCAPES_IDS = np.array([0, 1, 4, 7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33])
APOLLO_IDS = np.array([0, 1, 17, 33, 34, 35, 36, 37, 38, 39, 40, 49, 50, 65, 66, 67, 81, 82, 83, 84, 85,
                       86, 97, 98, 99, 100, 113, 161, 162, 163, 164, 165, 166, 167, 168, 255])


def frame_image(seed: int, t: int) -> np.ndarray:
    """(H, W, 3) uint8 BGR: a textured scene of video ``seed`` that slides one pixel per frame ``t``."""
    rng = np.random.default_rng(seed)
    wide = rng.integers(0, 256, (H, W + 64, 3), dtype=np.uint8)
    wide = cv2.GaussianBlur(wide, (5, 5), 0)
    start = t % 64
    return np.ascontiguousarray(wide[:, start:start + W])


def random_label(ids: np.ndarray, seed: int, dtype: type = np.uint8) -> np.ndarray:
    """(H, W) label map of blocky regions drawn from ``ids``."""
    rng = np.random.default_rng(seed)
    coarse = rng.choice(ids, (H // 4, W // 4))
    return np.kron(coarse, np.ones((4, 4), dtype=np.int64)).astype(dtype)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")


def zip_folder(folder: Path, archive: Path, members_from: Path,
               compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Zip every file under ``folder`` with member names relative to ``members_from``."""
    with zipfile.ZipFile(archive, "w", compression) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(members_from).as_posix())
    return archive


# ---------------------------------------------------------------------------------------------
# Cityscapes
# ---------------------------------------------------------------------------------------------
# (split, city, seq, labelled frame numbers): Frankfurt has two labelled frames in one sequence
# whose snippets touch (frames 0-29 and 30-59), as long val sequences do in the real data.
CITYSCAPES_SNIPPETS = (("train", "aachen", "000000", (19,)), ("train", "aachen", "000001", (19,)),
                       ("train", "stuttgart", "000003", (19,)), ("val", "frankfurt", "000000", (19, 49)))


def cityscapes_download(root: Path, zipped: bool = False) -> Path:
    """A Cityscapes download under ``root``; returns the folder to pass as ``--source``.

    ``zipped``: the two official zips side by side, as downloaded; else the extracted folders.
    There is also a gtFine test label (no sequence frames: test is not prepared).
    """
    root = Path(root)
    tree = root / "extracted" if zipped else root
    for n, (split, city, seq, labelled) in enumerate(CITYSCAPES_SNIPPETS):
        for lab in labelled:
            for frame in range(lab - 19, lab + 11):
                stem = f"{city}_{seq}_{frame:06d}"
                image = tree / "leftImg8bit_sequence" / split / city / f"{stem}_leftImg8bit.png"
                _png(image, frame_image(n, frame))
            stem = f"{city}_{seq}_{lab:06d}"
            gt = tree / "gtFine" / split / city
            ids = random_label(CITYSCAPES_IDS, 100 * n + lab)
            _png(gt / f"{stem}_gtFine_labelIds.png", ids)
            _png(gt / f"{stem}_gtFine_color.png", np.dstack([ids * 7, ids * 3, ids]).astype(np.uint8))
            _png(gt / f"{stem}_gtFine_instanceIds.png", ids.astype(np.uint16) * 1000)
            (gt / f"{stem}_gtFine_polygons.json").write_text(json.dumps({"imgHeight": H, "imgWidth": W,
                                                                         "objects": []}))
    _png(tree / "gtFine" / "test" / "berlin" / "berlin_000000_000019_gtFine_labelIds.png",
         np.zeros((H, W), np.uint8))
    for name in ("license.txt", "README"):
        (tree / name).write_text("The Cityscapes Dataset (fixture)\n")
    if not zipped:
        return root
    zip_folder(tree / "leftImg8bit_sequence", root / "leftImg8bit_sequence_trainvaltest.zip", tree)
    zip_folder(tree / "gtFine", root / "gtFine_trainvaltest.zip", tree)
    with zipfile.ZipFile(root / "gtFine_trainvaltest.zip", "a") as zf:
        zf.write(tree / "license.txt", "license.txt")
    shutil.rmtree(tree)
    return root


# ---------------------------------------------------------------------------------------------
# ApolloScape scene parsing
# ---------------------------------------------------------------------------------------------
# (road folder, record, frames, cameras, label-less frame, test record): 45 frames = 2 partitions
# + 3 leftovers; Record003's frame 5 has no label, which cuts it into runs of 5 and 44 frames.
APOLLO_RECORDS = (("road02_ins", "Record001", 45, (5, 6), None, False),
                  ("road02_ins", "Record002", 21, (5,), None, False),
                  ("road02_ins", "Record003", 50, (5,), 5, False),
                  ("road02_ins", "Record004", 21, (5,), None, True),
                  ("road03_ins", "Record001", 21, (5,), None, False),
                  ("road03_ins", "Record007", 22, (5,), None, False))


def apolloscape_download(root: Path) -> Path:
    """The extracted ``road0X_ins`` folders under ``root``; returns ``root`` (pass it as ``--source``).

    Record004 is a test record: every pixel of its labels is 255, as the release has it.
    """
    root = Path(root)
    for n, (road, record, frames, cameras, no_label, test) in enumerate(APOLLO_RECORDS):
        for camera in cameras:
            images = root / road / "ColorImage" / record / f"Camera {camera}"
            labels = root / road / "Label" / record / f"Camera {camera}"
            images.mkdir(parents=True, exist_ok=True)
            poses = []
            for t in range(frames):
                stem = f"1709{27 + n:02d}_{63800000 + 137 * t:09d}_Camera_{camera}"
                ok, jpg = cv2.imencode(".jpg", frame_image(10 + n, t), [cv2.IMWRITE_JPEG_QUALITY, 95])
                (images / f"{stem}.jpg").write_bytes(jpg.tobytes())
                poses.append(f"1 0 0 0 0 1 0 0 0 0 1 {t} 0 0 0 1 {stem}.jpg")
                if t == no_label:
                    continue
                label = np.full((H, W), 255, np.uint8) if test else random_label(APOLLO_IDS, 1000 * n + t)
                _png(labels / f"{stem}_bin.png", label)
                _png(labels / f"{stem}_instanceIds.png", label.astype(np.uint16) * 1000)
            (images / "pose.txt").write_text("\n".join(poses) + "\n")
    return root


# ---------------------------------------------------------------------------------------------
# KITTI semantics + stereo 2015 multi-view extension
# ---------------------------------------------------------------------------------------------
KITTI_SCENES = 5
KITTI_GAP = ("000003", 4)  # scene 000003 lacks multi-view frame 04


def kitti_download(root: Path, zipped: bool = False) -> tuple[Path, Path]:
    """``data_semantics`` and ``data_scene_flow_multiview`` (folders, or the zips); returns both paths."""
    root = Path(root)
    sem, multi = root / "data_semantics", root / "data_scene_flow_multiview"
    for s in range(KITTI_SCENES):
        scene = f"{s:06d}"
        ids = random_label(CITYSCAPES_IDS, 500 + s)
        _png(sem / "training" / "image_2" / f"{scene}_10.png", frame_image(50 + s, 10))
        _png(sem / "training" / "semantic" / f"{scene}_10.png", ids)
        _png(sem / "training" / "semantic_rgb" / f"{scene}_10.png", np.dstack([ids, ids, ids]))
        _png(sem / "training" / "instance" / f"{scene}_10.png", ids.astype(np.uint16) << 8)
        _png(sem / "testing" / "image_2" / f"{scene}_10.png", frame_image(90 + s, 10))
        for t in range(21):
            if (scene, t) == KITTI_GAP:
                continue
            for cam in ("image_2", "image_3"):
                _png(multi / "training" / cam / f"{scene}_{t:02d}.png", frame_image(50 + s, t))
    if not zipped:
        return sem, multi
    paths = (zip_folder(sem, root / "data_semantics.zip", sem),
             zip_folder(multi, root / "data_scene_flow_multiview.zip", multi))
    shutil.rmtree(sem)
    shutil.rmtree(multi)
    return paths


# ---------------------------------------------------------------------------------------------
# NYU-V2: raw video + labelled set + 894 → 40 mapping
# ---------------------------------------------------------------------------------------------
NYU_SCENES = {"bedroom_0001": 30, "kitchen_0028b": 25, "office_0003": 22, "bathroom_0005": 21}
# labelled frame i (1-based) ← (scene, raw frame index); office frame 3 is too close to the scene's
# start for ±10 frames, living_room_0002 was not downloaded.
NYU_LABELLED = (("bedroom_0001", 12), ("kitchen_0028b", 12), ("office_0003", 3), ("bedroom_0001", 17),
                ("living_room_0002", 8), ("bathroom_0005", 10))


def _raw_name(scene: str, t: int) -> str:
    return f"r-{1294886363 + t // 20}.{(t % 20) * 40000 + 100000:06d}-{1658416226 + 33 * t}.ppm"


def nyu_mapping() -> np.ndarray:
    """A stand-in for Gupta et al.'s 894 → 40 table: (894,) ints, class c ↦ 1 + c mod 40."""
    return 1 + np.arange(1, 895) % 40


def nyuv2_download(root: Path, mat: bool = False) -> dict[str, Path]:
    """Raw scene folders, the labelled set and a mapping text file; returns their paths.

    ``mat``: the labelled set as ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5, needs h5py);
    else unpacked: ``rgb/<i:04d>.png``, ``labels/<i:04d>.png`` (uint16 class ids 0..894) and
    ``rawRgbFilenames.txt``.
    """
    root = Path(root)
    raw = root / "raw"
    for n, (scene, frames) in enumerate(NYU_SCENES.items()):
        index = []
        for t in range(frames):
            name = _raw_name(scene, t)
            ok, ppm = cv2.imencode(".ppm", frame_image(200 + n, t))
            (raw / scene).mkdir(parents=True, exist_ok=True)
            (raw / scene / name).write_bytes(ppm.tobytes())
            depth = name.replace("r-", "d-").replace(".ppm", ".pgm")
            cv2.imwrite(str(raw / scene / depth), np.full((H, W), 1000 + t, np.uint16))
            index += [depth, name]
        (raw / scene / "INDEX.txt").write_text("\n".join(index) + "\n")
    scenes = list(NYU_SCENES)
    names, rgbs, labels = [], [], []
    for i, (scene, t) in enumerate(NYU_LABELLED):
        names.append(f"{scene}/{_raw_name(scene, t)}")
        n = scenes.index(scene) if scene in scenes else 9
        rgbs.append(cv2.cvtColor(frame_image(200 + n, t), cv2.COLOR_BGR2RGB))
        labels.append(random_label(np.arange(0, 895), 700 + i, np.uint16))
    mapping = root / "nyu894_to_40.txt"
    mapping.write_text("\n".join(str(v) for v in nyu_mapping()) + "\n")
    if mat:
        labelled = root / "nyu_depth_v2_labeled.mat"
        _write_labelled_mat(labelled, names, rgbs, labels)
    else:
        labelled = root / "labelled"
        for i, (rgb, label) in enumerate(zip(rgbs, labels, strict=True), start=1):
            _png(labelled / "rgb" / f"{i:04d}.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            _png(labelled / "labels" / f"{i:04d}.png", label)
        (labelled / "rawRgbFilenames.txt").write_text("\n".join(names) + "\n")
    return {"raw": raw, "labelled": labelled, "mapping": mapping}


def _write_labelled_mat(path: Path, names: list[str], rgbs: list[np.ndarray],
                        labels: list[np.ndarray]) -> None:
    """The fields of ``nyu_depth_v2_labeled.mat`` the script reads, as MATLAB v7.3 stores them.

    MATLAB writes column-major arrays, so h5py sees them transposed: ``images`` (N, 3, W, H),
    ``labels`` (N, W, H); cell arrays of strings are (1, N) object references to uint16 char codes.
    """
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.stack([rgb.transpose(2, 1, 0) for rgb in rgbs]))
        f.create_dataset("labels", data=np.stack([label.T for label in labels]))
        refs = f.create_dataset("rawRgbFilenames", (1, len(names)), dtype=h5py.ref_dtype)
        for i, name in enumerate(names):
            chars = f.create_dataset(f"#refs#/{i}", data=np.array([[ord(c)] for c in name], np.uint16))
            refs[0, i] = chars.ref


def build_all(root: Path) -> dict[str, object]:
    """Every fixture under ``root`` (the Cityscapes and KITTI ones zipped), for trying the scripts."""
    root = Path(root)
    try:
        import h5py  # noqa: F401

        mat = True
    except ImportError:
        mat = False
    return {"cityscapes": cityscapes_download(root / "cityscapes", zipped=True),
            "apolloscape": apolloscape_download(root / "apolloscape"),
            "kitti": kitti_download(root / "kitti", zipped=True),
            "nyuv2": nyuv2_download(root / "nyuv2", mat=mat)}


if __name__ == "__main__":
    for name, where in build_all(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/wrp-fixtures")).items():
        print(f"{name}: {where}")
