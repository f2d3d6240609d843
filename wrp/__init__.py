"""wrp — Warp-Refine Propagation (Ganeshan et al., ICCV 2021).

Semi-supervised auto-labelling of video for semantic segmentation: labels of sparse human-annotated
frames are warped along motion to their neighbours (geometric cue), then a denoising network trained
only by cycle-consistency repairs them (semantic cue). One module per idea of the paper; the
notebooks under ``notebooks/`` walk through them in order.
"""

__version__ = "0.1.0"
