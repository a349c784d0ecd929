"""``gafu.defects.check(OUT_DIR)``: does a defect dataset keep the rules anomalib's loaders rely on?

Checked, per category (from the manifest; without one, every folder that looks like a layout):

- layout: training images exist; no stray image where the loader would read it (it globs every
  image under the category folder), no temporary file left by an interrupted run;
- pairing: the sorted defect images and the sorted masks pair one to one, as the loaders pair
  them: same count, same defect folder, the mask named ``<image stem>_mask.png``;
- masks: PNG, 8-bit single channel, only 0 and 255, not empty, the image's size;
- images: readable;
- manifest: every file it records is there with its sha256; where a row says
  ``outside_identical``, the defect image equals its source's untouched copy outside the mask,
  bit for bit.

Returns a list of one-line problems (empty: the dataset is fine).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import GafuError
from ..jobs.manifest import MANIFEST_NAME, _TEMP_RE, latest_by, read_rows, sha256_file
from .layout import FOLDERS, LOADER_EXTENSIONS, MASK_SUFFIX, REPORT_DIR

#: Problems listed per kind before the rest are summarised.
MAX_PER_KIND = 20


def _read(path: Path) -> Tuple[Optional[np.ndarray], Optional[str], Optional[str]]:
    """(pixels, PIL mode, error)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im), im.mode, None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return None, None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _categories(out: Path, rows: List[dict]) -> Dict[str, str]:
    found: Dict[str, str] = {}
    for r in rows:
        s = r.get("settings") or {}
        if s.get("category") and s.get("layout") in FOLDERS:
            found[s["category"]] = s["layout"]
    if found:
        return found
    for d in sorted(p for p in out.iterdir() if p.is_dir() and p.name != REPORT_DIR and not p.name.startswith(".")):
        if (d / "train" / "good").is_dir():
            found[d.name] = "mvtec"
        elif (d / "normal").is_dir():
            found[d.name] = "folder"
    return found


def _check_category(out: Path, category: str, layout: str, problems: List[str]) -> None:
    root = out / category
    train, test_good, defects_dir, masks_dir = FOLDERS[layout]
    if not root.is_dir():
        problems.append(f"{category}: category folder missing")
        return
    defects: List[str] = []
    masks: List[str] = []
    goods = {train: 0, test_good: 0}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if _TEMP_RE.match(name):
                problems.append(f"{category}/{rel}: temporary file of an interrupted run (rerun with resume)")
                continue
            suffix = Path(name).suffix
            if suffix.lower() in LOADER_EXTENSIONS and suffix not in LOADER_EXTENSIONS:
                problems.append(f"{category}/{rel}: upper-case extension; anomalib's loaders skip it")
                continue
            if suffix not in LOADER_EXTENSIONS:
                continue
            parent = Path(rel).parent.as_posix()
            top = parent.split("/")[0]
            if parent in goods:
                goods[parent] += 1
            elif layout == "mvtec" and top == defects_dir and parent.count("/") == 1:
                defects.append(rel)
            elif layout == "folder" and top == defects_dir and parent.count("/") == 1:
                defects.append(rel)
            elif top == masks_dir and parent.count("/") == 1:
                masks.append(rel)
            else:
                problems.append(f"{category}/{rel}: image outside the layout's folders (the loader would read it)")
    if goods[train] == 0:
        problems.append(f"{category}/{train}: no training images")
    defects.sort()
    masks.sort()
    if len(defects) != len(masks):
        problems.append(f"{category}: {len(defects)} defect images but {len(masks)} masks")
    shown = 0
    for img, msk in zip(defects, masks):
        want = f"{masks_dir}/{Path(img).parent.name}/{Path(img).stem}{MASK_SUFFIX}.png"
        if msk != want:
            if shown < MAX_PER_KIND:
                problems.append(f"{category}/{img}: pairs with {msk} in sorted order, expected {want}")
            shown += 1
            continue
        _check_pair(root, category, img, msk, problems)
    if shown > MAX_PER_KIND:
        problems.append(f"{category}: ... and {shown - MAX_PER_KIND} more pairing problems")


def _check_pair(root: Path, category: str, img: str, msk: str, problems: List[str]) -> None:
    pixels, _, err = _read(root / img)
    if err:
        problems.append(f"{category}/{img}: unreadable image ({err})")
        return
    if Path(msk).suffix != ".png":
        problems.append(f"{category}/{msk}: masks must be PNG (lossless)")
    m, mode, err = _read(root / msk)
    if err:
        problems.append(f"{category}/{msk}: unreadable mask ({err})")
        return
    if mode != "L":
        problems.append(f"{category}/{msk}: mask mode {mode}, expected 8-bit greyscale (L)")
        return
    values = np.unique(m)
    if not set(values.tolist()) <= {0, 255}:
        problems.append(f"{category}/{msk}: mask is not binary (values {values[:6].tolist()}...; only 0 and 255)")
    if not (m > 0).any():
        problems.append(f"{category}/{msk}: empty mask")
    if m.shape[:2] != pixels.shape[:2]:
        problems.append(f"{category}/{msk}: mask is {m.shape[1]}x{m.shape[0]}, image {pixels.shape[1]}x{pixels.shape[0]}")


def _check_rows(out: Path, rows: List[dict], problems: List[str]) -> None:
    good = {}
    for r in rows:
        if r.get("status") != "ok":
            continue
        p = out / r["output"]
        if not p.is_file():
            problems.append(f"{r['output']}: in the manifest but missing")
            continue
        if sha256_file(p) != r.get("output_sha256"):
            problems.append(f"{r['output']}: changed since it was written (sha256 differs from the manifest)")
            continue
        for rel, sha in (r.get("also_written") or {}).items():
            q = out / rel
            if not q.is_file():
                problems.append(f"{rel}: in the manifest but missing")
            elif sha256_file(q) != sha:
                problems.append(f"{rel}: changed since it was written (sha256 differs from the manifest)")
        if r.get("kind") == "good":
            good[r["output"]] = r
    for r in rows:
        if r.get("status") != "ok" or r.get("kind") != "defect" or not r.get("outside_identical"):
            continue
        src = r.get("source_copy")
        if not src or src not in good:
            problems.append(f"{r['output']}: its source's copy {src} is not in the dataset; outside-mask identity unchecked")
            continue
        a, _, e1 = _read(out / r["output"])
        b, _, e2 = _read(out / src)
        m, _, e3 = _read(out / r["mask"])
        if e1 or e2 or e3:
            continue  # reported above
        if a.shape != b.shape or m.shape[:2] != a.shape[:2]:
            problems.append(f"{r['output']}: size differs from its source {src}")
            continue
        outside = m == 0
        if not np.array_equal(a[outside], b[outside]):
            n = int((a != b).reshape(a.shape[0], a.shape[1], -1).any(-1)[outside].sum())
            problems.append(f"{r['output']}: {n} pixels outside the mask differ from {src}")


def check(out_dir: Union[str, os.PathLike]) -> List[str]:
    """Problems of the defect dataset in ``out_dir`` as one-line strings (empty list: it is fine)."""
    out = Path(out_dir)
    if not out.is_dir():
        return [f"{out}: not a folder"]
    problems: List[str] = []
    try:
        rows = list(latest_by(read_rows(out / MANIFEST_NAME), "output").values())
    except GafuError as exc:
        problems.append(str(exc))
        rows = []
    if not (out / MANIFEST_NAME).is_file():
        problems.append(f"{out / MANIFEST_NAME}: no manifest (sources, seeds and licences are not recorded)")
    cats = _categories(out, rows)
    if not cats:
        problems.append(f"{out}: no category folder with train/good (mvtec) or normal (folder)")
    for category, layout in cats.items():
        _check_category(out, category, layout, problems)
    _check_rows(out, rows, problems)
    return problems
