"""The dataset's report: a contact sheet per defect type and a quality summary.

``OUT_DIR/report/<category>/contact_<defect>.png``: up to :data:`SHEET_ITEMS` defects, each as
(image | image with the mask overlaid: red tint inside, red outline). ``quality.json``: per defect
type and overall, the mask-area histogram (:data:`AREA_BINS`), the mean change (0..255) inside and
outside the masks, and the structure-preservation score of the surroundings (Pearson correlation
of Sobel gradient magnitudes before/after over the 8 px band around each mask; 1 = unchanged).
Everything is computed from the manifest rows and the files, so the report is the same bytes for
the same dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..jobs.manifest import canonical_json, latest_by, read_rows

SHEET_ITEMS = 8
TILE = 160
#: Mask-area histogram bin edges (fractions of the image).
AREA_BINS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _tile(im, size: int = TILE):
    from PIL import Image

    im = im.convert("RGB")
    w, h = im.size
    s = size / max(w, h)
    small = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.NEAREST if s >= 1 else Image.BOX)
    canvas = Image.new("RGB", (size, size), (32, 32, 32))
    canvas.paste(small, ((size - small.size[0]) // 2, (size - small.size[1]) // 2))
    return canvas


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB uint8: the image with the mask tinted red (50 %) and its outline in pure red."""
    from .blend import erode

    rgb = np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image
    out = rgb.astype(np.float64)
    out[mask] = 0.5 * out[mask] + 0.5 * np.array([255.0, 0.0, 0.0])
    edge = mask & ~erode(mask)
    out[edge] = (255.0, 0.0, 0.0)
    return out.astype(np.uint8)


def contact_sheet(out_dir: Path, rows: List[Dict[str, Any]]):
    """A PIL image: two (image | overlay) pairs per line, captioned with number, mask kind and area."""
    from PIL import Image, ImageDraw

    cols = 2
    lines = (len(rows) + cols - 1) // cols
    cap = 14
    sheet = Image.new("RGB", (cols * 2 * TILE, lines * (TILE + cap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, row in enumerate(rows):
        with Image.open(out_dir / row["output"]) as im:
            img = np.asarray(im)
        with Image.open(out_dir / row["mask"]) as m:
            mask = np.asarray(m) > 0
        x, y = (i % cols) * 2 * TILE, (i // cols) * (TILE + cap)
        sheet.paste(_tile(Image.fromarray(img)), (x, y))
        sheet.paste(_tile(Image.fromarray(overlay(img, mask))), (x + TILE, y))
        info = row.get("mask_info", {})
        text = f"{Path(row['output']).stem} {info.get('kind')} {100 * info.get('area', 0):.2f}% {row.get('fill', {}).get('kind')}"
        draw.text((x + 3, y + TILE + 1), text, fill=(0, 0, 0))
    return sheet


def _stats(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    areas = [r["mask_info"]["area"] for r in rows]
    q = [r.get("quality") or {} for r in rows]
    counts, _ = np.histogram(areas, bins=AREA_BINS) if areas else (np.zeros(len(AREA_BINS) - 1, int), None)
    structure = [v["structure"] for v in q if v.get("structure") is not None]

    def mean(vals) -> Optional[float]:
        return round(float(np.mean(vals)), 6) if vals else None

    return {
        "images": len(rows),
        "area": {"bins": list(AREA_BINS), "counts": [int(c) for c in counts], "mean": mean(areas),
                 "min": min(areas) if areas else None, "max": max(areas) if areas else None},
        "change_inside": mean([v.get("change_inside") for v in q if v.get("change_inside") is not None]),
        "change_outside": mean([v.get("change_outside") for v in q if v.get("change_outside") is not None]),
        "structure": mean(structure),
        "structure_min": round(min(structure), 6) if structure else None,
    }


def write_report(plan, layout) -> Tuple[Optional[str], Dict[str, str], Dict[str, Any]]:
    """Write the contact sheets and quality.json for the dataset's current manifest rows."""
    from ..image import atomic_write

    out_dir = Path(plan.out_dir)
    rows = [r for r in latest_by(read_rows(plan.manifest_path), "output").values()
            if r.get("kind") == "defect" and r.get("status") == "ok"]
    order = {it.output: it.index for it in plan.items}
    rows.sort(key=lambda r: (order.get(r["output"], len(order)), r["output"]))
    by_type: Dict[str, List[Dict[str, Any]]] = {}
    for r in rows:
        by_type.setdefault(r["defect"], []).append(r)
    folder = out_dir / layout.report_dir()
    sheets: Dict[str, str] = {}
    import io

    for name, items in by_type.items():
        sheet = contact_sheet(out_dir, items[:SHEET_ITEMS])
        buf = io.BytesIO()
        sheet.save(buf, format="PNG")
        path = folder / f"contact_{name}.png"
        atomic_write(path, lambda fh, data=buf.getvalue(): fh.write(data))
        sheets[name] = str(path)
    quality = {"all": _stats(rows), "by_type": {k: _stats(v) for k, v in by_type.items()}}
    if not rows:
        return None, sheets, quality
    path = folder / "quality.json"
    text = canonical_json({"category": layout.category, "layout": layout.kind, **quality})
    atomic_write(path, lambda fh: fh.write((text + "\n").encode("ascii")))
    return str(path), sheets, quality
