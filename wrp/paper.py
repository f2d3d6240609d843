"""The numbers the paper reports — for comparison beside ours, never for tuning.

Source: the supplementary material (``shared/seed/warp-refine-supplementary.txt``), Tables 1 and 2,
and the headline results of the main paper as summarised in its abstract. All are mIoU (%) on the
Cityscapes val split unless the entry says otherwise.
"""

from __future__ import annotations

from typing import Any

# Supplementary Table 1: training with different labelling policies, mean of 3 seeds,
# no coarse labels, no Mapillary pre-training. Motion-only uses frames ±2.
TABLE1_POLICIES = ("baseline", "motion-only", "semantic-only", "warp-refine")
TABLE1: dict[str, dict[str, float | str]] = {
    "DeepLabV3": {"backbone": "ResNeXt-50", "baseline": 79.26, "motion-only": 79.01,
                  "semantic-only": 80.45, "warp-refine": 80.68},
    "OCRNet": {"backbone": "ResNeXt-50", "baseline": 79.55, "motion-only": 79.60,
               "semantic-only": 80.89, "warp-refine": 80.80},
    "MSA-HRNet-OCR": {"backbone": "HRNet-W48", "baseline": 83.35, "motion-only": 83.00,
                      "semantic-only": 83.91, "warp-refine": 84.07},
}

# Supplementary Table 2: (mean, std) of 3 seeds under three settings; None where not reported.
# Settings: no extra data; + coarse labels; + coarse labels + Mapillary Vistas pre-training.
TABLE2_SETTINGS = ("none", "coarse", "coarse+mapillary")
TABLE2: dict[str, dict[str, tuple[float, float | None] | None | str]] = {
    "[Zhu et al.] baseline B": {"none": None, "coarse": None, "coarse+mapillary": (79.46, None),
                                "iterations": "175 × 2975"},
    "[Zhu et al.] B + RLL": {"none": None, "coarse": None, "coarse+mapillary": (80.85, None),
                             "iterations": "175 × 2925"},
    "[Zhu et al.] B + RLL + D^m_3": {"none": None, "coarse": None,
                                     "coarse+mapillary": (81.35, None), "iterations": "175 × 8925"},
    "Baseline B": {"none": (77.66, 0.27), "coarse": (79.15, 0.23),
                   "coarse+mapillary": (80.94, 0.10), "iterations": "175 × 8925"},
    "B + RLL": {"none": (77.50, 0.12), "coarse": None, "coarse+mapillary": (80.76, 0.18),
                "iterations": "175 × 8925"},
    "B + RLL + D^m_3": {"none": (77.41, 0.22), "coarse": (78.69, 0.20),
                        "coarse+mapillary": (80.80, 0.11), "iterations": "175 × 8925"},
}

# Headline results of the main paper (abstract).
HEADLINE = {
    "propagation gain over prior work, ApolloScape (mIoU)": 13.1,
    "NYU-V2 segmentation gain (mIoU)": 1.8,
    "KITTI segmentation gain (mIoU)": 3.61,
    "Cityscapes test mIoU": 85.3,
}


def table1_markdown() -> str:
    """Supplementary Table 1 as a Markdown table, labelled as the paper's numbers."""
    head = "| model (paper, Cityscapes val) | backbone | " + " | ".join(TABLE1_POLICIES) + " |"
    rows = [head, "|---|---|" + "---:|" * len(TABLE1_POLICIES)]
    for model, cells in TABLE1.items():
        best = max(float(cells[p]) for p in TABLE1_POLICIES)
        values = [f"**{cells[p]:.2f}**" if cells[p] == best else f"{cells[p]:.2f}"
                  for p in TABLE1_POLICIES]
        rows.append(f"| {model} | {cells['backbone']} | " + " | ".join(values) + " |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# How the tables' rows and columns map to this implementation (wrp.tables trains them; the
# command line offers them as choices without loading any model code)
# ---------------------------------------------------------------------------------------------
POLICIES = ("copy", "motion-only", "semantic-only", "warp-inpaint", "warp-refine")  # wrp.policies
CARRIED_POLICIES = ("motion-only", "warp-inpaint", "warp-refine")  # labels that travel: wrp assess
# what Ω's input label holds where the motion cannot explain a pixel (wrp.policies.Propagator):
# the motion's own guess, or g_ψ's label (the warp-inpaint of METHOD.md §1)
INPAINT = ("motion", "semantic")
DEFAULT_INPAINT = INPAINT[0]

ARCHS = {"DeepLabV3": "deeplabv3", "OCRNet": "ocrnet", "MSA-HRNet-OCR": "msa_hrnet_ocr"}

# Table 1's columns beyond the paper's: the dataset's own labels of the generated frames (what a
# flawless propagation would give: every policy's ceiling), and warp-refine labels with the pixels
# Ω is unsure of left unlabelled (ignored by the loss)
TRUE_LABELS = "true-labels"
CONFIDENT = "warp-refine-confident"
TABLE1_COLUMNS = (*TABLE1_POLICIES, TRUE_LABELS, CONFIDENT)

# Table 2's rows: (loss, generated policy, ±k of the generated labels, iteration share, LR factor)
TABLE2_ROWS: dict[str, dict[str, Any]] = {
    "Baseline B, under-trained (1/3 iterations, LR / 8)": {"loss": "ce", "policy": None, "k": None,
                                                          "iters_share": 1 / 3, "lr_factor": 1 / 8},
    "Baseline B": {"loss": "ce", "policy": None, "k": None, "iters_share": 1.0, "lr_factor": 1.0},
    "B + RLL": {"loss": "rll", "policy": None, "k": None, "iters_share": 1.0, "lr_factor": 1.0},
    "B + RLL + D^m_3": {"loss": "rll", "policy": "motion-only", "k": 3, "iters_share": 1.0,
                        "lr_factor": 1.0},
}
