"""Synthetic defect datasets for visual inspection, with pixel-exact masks, loadable by anomalib as they are.

    from gafu import defects
    summary = defects.synth("good/", "out/", category="hazelnut", n=20, defect_types="crack,stain")
    problems = defects.check("out/")          # [] when the dataset keeps every rule

Rooms: :mod:`~gafu.defects.masks` (Perlin, blob and scratch masks from the item's seed, ROI),
:mod:`~gafu.defects.fill` (what goes inside: a stylization restricted to the mask, fast or
optimize engine), :mod:`~gafu.defects.blend` (alpha, Poisson, hard; nothing outside the mask
changes), :mod:`~gafu.defects.layout` (mvtec and folder layouts), :mod:`~gafu.defects.synth` (the
job, on :mod:`gafu.jobs`), :mod:`~gafu.defects.report` (contact sheets, quality),
:mod:`~gafu.defects.check`. Importing this package loads no model.
"""

from __future__ import annotations

from .check import check
from .synth import DEFECT_MASKS, DEFAULT_DEFECTS, SynthSummary, plan_job, synth

__all__ = ["DEFAULT_DEFECTS", "DEFECT_MASKS", "SynthSummary", "check", "plan_job", "synth"]
