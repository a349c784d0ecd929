"""Where a defect dataset's files go, for the two layouts anomalib reads.

``mvtec`` (anomalib's ``MVTecAD(root=OUT_DIR, category=NAME)``)::

    OUT_DIR/<category>/train/good/000.png            untouched copies of the good images kept for training
    OUT_DIR/<category>/test/good/000.png             the held-out good images
    OUT_DIR/<category>/test/<defect>/000.png         synthetic defects
    OUT_DIR/<category>/ground_truth/<defect>/000_mask.png   their masks (uint8 0/255 PNG)

``folder`` (anomalib's ``Folder(root=OUT_DIR/<category>, normal_dir="normal", abnormal_dir="abnormal",
normal_test_dir="normal_test", mask_dir="mask")``)::

    normal/000.png  normal_test/000.png  abnormal/<defect>/000.png  mask/<defect>/000_mask.png

Both loaders glob every image under the category folder and pair the *sorted* defect images with
the *sorted* masks, then require each image's stem to occur in its mask's stem: numbers have a
fixed width (at least 3 digits) so that sorting pairs them one to one, and nothing else with an
image extension lives under the category folder. The manifest, the contact sheets and the quality
report live outside it: ``OUT_DIR/manifest.jsonl`` and ``OUT_DIR/report/<category>/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict

from ..errors import GafuError

LAYOUTS = ("mvtec", "folder")
REPORT_DIR = "report"
MASK_SUFFIX = "_mask"
#: Image extensions the anomalib loaders pick up (torchvision's IMG_EXTENSIONS; suffix compared as is).
LOADER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_CATEGORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: Folder names per layout: (train good, test good, defects, masks).
FOLDERS: Dict[str, tuple] = {
    "mvtec": ("train/good", "test/good", "test", "ground_truth"),
    "folder": ("normal", "normal_test", "abnormal", "mask"),
}


def check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise GafuError(f"unknown layout '{layout}'; choose from: {', '.join(LAYOUTS)}", argument="layout")


def check_category(category: str) -> str:
    if not isinstance(category, str) or not _CATEGORY.match(category) or category == REPORT_DIR:
        raise GafuError(f"category must be a folder name of letters, digits, '_', '-' or '.' (not "
                        f"'{REPORT_DIR}'), got {category!r}", argument="category")
    return category


def check_defect_name(name: str) -> str:
    if not _NAME.match(name) or name == "good":
        raise GafuError(f"defect_types: names are lower-case letters, digits, '_' or '-' (not 'good'), got {name!r}",
                        argument="defect_types")
    return name


def width_for(count: int) -> int:
    """Digits of the numeric stems: at least 3 (000.png), more when there are more files."""
    return max(3, len(str(max(0, count - 1))))


@dataclass(frozen=True)
class Layout:
    kind: str
    category: str

    def _f(self, i: int) -> tuple:
        return FOLDERS[self.kind][i]

    def good(self, held_out: bool, index: int, width: int) -> str:
        return f"{self.category}/{self._f(1 if held_out else 0)}/{index:0{width}d}.png"

    def defect(self, defect: str, index: int, width: int) -> str:
        return f"{self.category}/{self._f(2)}/{defect}/{index:0{width}d}.png"

    def mask(self, defect: str, index: int, width: int) -> str:
        return f"{self.category}/{self._f(3)}/{defect}/{index:0{width}d}{MASK_SUFFIX}.png"

    def mask_for(self, defect_path: str) -> str:
        """The mask path of a defect image path (same defect folder, ``<stem>_mask.png``)."""
        parts = defect_path.split("/")
        stem = parts[-1].rsplit(".", 1)[0]
        return "/".join([self.category, self._f(3), parts[-2], f"{stem}{MASK_SUFFIX}.png"])

    def report_dir(self) -> str:
        return f"{REPORT_DIR}/{self.category}"
