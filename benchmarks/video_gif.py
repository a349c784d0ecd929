"""Make docs/video.gif: a pan/zoom over chelsea.png (CC0, shared images), fast method, Starry Night.

Left: the input clip; middle: plain per-frame FastStylizer.run; right: gafu video --method fast
(shared statistics + warped blend). 16 frames, 180x120 each, 128-colour GIF (< 1 MB).

    python benchmarks/video_gif.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "images"


def main() -> int:
    from gafu.fast import FastStylizer
    from gafu.image import atomic_write
    from gafu.video import stylize
    from gafu.video.clips import pan_zoom_clip

    frames = pan_zoom_clip(SHARED / "content" / "chelsea.png", 16, (180, 120), pan=0.2, zoom=1.3)
    style = SHARED / "style" / "vangogh_starry_night.jpg"
    steady = stylize(frames, style, threads=2)
    st = FastStylizer(style=style, threads=2)
    plain = [np.asarray(st.run(f).image) for f in frames]
    sep = np.full((120, 4, 3), 255, np.uint8)
    rows = [np.concatenate([a, sep, b, sep, c], 1) for a, b, c in zip(frames, plain, steady.frames)]
    ims = [Image.fromarray(r).quantize(colors=128, method=Image.MEDIANCUT, dither=Image.NONE) for r in rows]
    atomic_write(ROOT / "docs" / "video.gif",
                 lambda fh: ims[0].save(fh, format="GIF", save_all=True, append_images=ims[1:], duration=100, loop=0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
