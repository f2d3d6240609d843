"""Confusion matrices and mean IoU — one scorer for segmenters and propagated labels alike —
the mean ± std of a table cell over seeds, and the 95 % t-interval of a gain paired by seed."""

from __future__ import annotations

import math
import statistics

import numpy as np

from wrp.data import IGNORE_INDEX, NUM_CLASSES


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int = NUM_CLASSES,
                     ignore_index: int = IGNORE_INDEX, unlabelled_is_wrong: bool = True) -> np.ndarray:
    """(K, K+1) int64 counts: rows = ground truth, columns = prediction, last column = unlabelled.

    Ignore pixels of ``gt`` are skipped.

    With ``unlabelled_is_wrong`` a prediction of ``ignore_index`` (a pixel a policy left without
    a label) counts as a miss of the true class — no policy wins by abstaining.
    """
    pred, gt = np.asarray(pred).ravel().astype(np.int64), np.asarray(gt).ravel().astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction has {pred.size} pixels, ground truth {gt.size}")
    keep = gt != ignore_index
    pred, gt = pred[keep], gt[keep]
    if not unlabelled_is_wrong:
        keep = pred != ignore_index
        pred, gt = pred[keep], gt[keep]
    miss = pred >= num_classes  # unlabelled: counted in the last column, in the union of its true class
    conf = np.bincount(gt[~miss] * num_classes + pred[~miss], minlength=num_classes**2)
    misses = np.bincount(gt[miss], minlength=num_classes)
    return np.concatenate([conf.reshape(num_classes, num_classes), misses[:, None]], axis=1)


def iou(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU from a confusion matrix (K, K) or (K, K+1); NaN for classes absent from both."""
    k = conf.shape[0]
    tp = np.diag(conf[:, :k]).astype(np.float64)
    union = conf.sum(axis=1) + conf[:, :k].sum(axis=0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU (%) over the classes present in ground truth or prediction."""
    values = iou(conf)
    return float(np.nanmean(values) * 100) if np.isfinite(values).any() else float("nan")


def coverage(conf: np.ndarray) -> float:
    """Share (%) of scored pixels that received a label."""
    k = conf.shape[0]
    total = conf.sum()
    return float(100 * conf[:, :k].sum() / total) if total else float("nan")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of a cell's seeds (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


#: Student's t, two-sided 95 %: t_{0.975, ν} for ν = 1..30 (standard tables).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def t975(dof: int) -> float:
    """t_{0.975, ν}: the table up to ν = 30, beyond it the Cornish–Fisher expansion around the
    normal's 1.95996 (within 0.001 there)."""
    if dof < 1:
        raise ValueError(f"a t-interval needs ≥ 1 degree of freedom, got {dof}")
    if dof <= len(T975):
        return T975[dof - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def paired_interval(differences: list[float]) -> tuple[float, float, float]:
    """Mean of per-seed paired differences (same seed: same initialisation and sampling order) and
    its 95 % t-interval: ``(mean, low, high)``. Needs two or more seeds."""
    n = len(differences)
    if n < 2:
        raise ValueError(f"a paired interval needs ≥ 2 seeds, got {n}")
    mean = statistics.fmean(differences)
    half = t975(n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return mean, mean - half, mean + half
