"""A propagation run for the resume test: random-weight g_ψ and Ω (seeded), the smoke world's
validation clip, warp-refine; ``--delay`` slows every step so the test can kill it mid-way.

    python tests/propagation_worker.py OUT [--delay SECONDS]
"""

from __future__ import annotations

import argparse
import time

import torch

from wrp import policies
from wrp.data import Manifest
from wrp.denoiser import Denoiser
from wrp.models import SMALL_BACKBONES, CachedSegmenter, build_model
from wrp.motion import make_estimator
from wrp.policies import Propagator, propagate_clips
from wrp.profiles import Run
from wrp.stages import manifest_for


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    torch.manual_seed(0)
    seg = build_model("msa_hrnet_ocr", backbone=SMALL_BACKBONES["msa_hrnet_ocr"], ocr_mid=32,
                      ocr_key=16).eval()
    omega = Denoiser(ngf=8, ocr_channels=32).eval()
    propagator = Propagator(make_estimator("dis"), CachedSegmenter(seg), omega)
    if args.delay:
        step = policies.STEPS["warp-refine"]

        def slow(*step_args):
            time.sleep(args.delay)
            return step(*step_args)

        policies.STEPS["warp-refine"] = slow
    clips = Manifest.load(manifest_for(Run.create("smoke", progress=False))).clips("val")
    print(propagate_clips(clips, "warp-refine", args.out, propagator, k=4, batch=1, confidence=True,
                          progress=False))


if __name__ == "__main__":
    main()
