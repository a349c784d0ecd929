"""Before/after numbers (and optionally images) for every control of ``gafu stylize``.

    python benchmarks/controls_demo.py [--size 192] [--steps 150] [--out DIR] [--only colour,mask,...]

Runs each control on the shared images (../shared/images, see MANIFEST.md) and prints one JSON
object: per experiment the measured quantity without the control ("before") and with it ("after"):

- colour:   mean |Cb,Cr - content's| (chroma error) and mean |Y - content's| for plain, luminance
            and histogram modes (Gatys et al. 2016);
- mask:     hazelnut + its JPEG mask: max/mean change outside the mask (must be 0) and inside;
- combo:    mask + luminance + two styles at once: the same numbers plus chroma error inside;
- regions:  the hazelnut mask used as a label map (white -> Starry Night, black -> Kandinsky):
            per-region style loss against each style (rows: regions, columns: styles), for the
            content, a single-style run and the region run;
- scale:    dominant spatial frequency (spectral centroid, cycles/px) of the added texture for
            style scales 0.5, 1, 2 with a painting and with a brick texture (CC0), and of a texture
            synthesized from a plaid of period 8 px (analytic check: expected 1/(8 x scale));
- strength: style and content loss (at the preset's weights) for strength 0 .. 1;
- seed:     max |difference| of two runs with the same seed (noise init), and with another seed.

With ``--out DIR`` every result is saved as PNG there, plus one contact sheet per experiment.
Timings are wall-clock seconds on whatever machine runs it (note the load when quoting them).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gafu import controls as C  # noqa: E402
from gafu.config import get_preset  # noqa: E402
from gafu.image import save_image, to_pil  # noqa: E402
from gafu.optimize import StyleTransfer  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
EXPERIMENTS = ("colour", "mask", "combo", "regions", "scale", "strength", "seed")


def r6(x):
    return float(f"{x:.6g}")


class Demo:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out) if args.out else None
        self.cfg = get_preset("seed").replace(size=args.size, steps=args.steps, lr=args.lr)
        img = SHARED
        self.hazelnut = img / "inspection" / "hazelnut_toy_crack.jpg"
        self.hazel_mask = img / "inspection" / "hazelnut_toy_crack_mask.jpg"
        self.photo = img / "content" / args.photo
        self.starry = img / "style" / "vangogh_starry_night.jpg"
        self.kandinsky = img / "style" / "kandinsky_composition_vii.jpg"
        self.brick = img / "inspection" / "texture_brick_cc0.png"
        self.seconds = {}

    def run(self, name, content, styles, cfg=None, **kw):
        t0 = time.perf_counter()
        st = StyleTransfer(content, styles, cfg or self.cfg, **kw)
        list(st.run())
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        if self.out is not None:
            save_image(st.image, self.out / f"{name}.png")
        return st

    def sheet(self, name, images):
        if self.out is None:
            return
        pils = [to_pil(t) for t in images]
        h = max(p.height for p in pils)
        from PIL import Image

        sheet = Image.new("RGB", (sum(p.width for p in pils) + 4 * (len(pils) - 1), h), "white")
        x = 0
        for p in pils:
            sheet.paste(p, (x, 0))
            x += p.width + 4
        sheet.save(self.out / f"sheet_{name}.png")

    # -----------------------------------------------------------------------------------------
    def colour(self):
        plain = self.run("colour_plain", self.photo, [self.starry])
        res = {}
        images = [plain.content_rgb, plain.image]
        for mode, st in (("none", plain),) + tuple(
            (m, self.run(f"colour_{m}", self.photo, [self.starry], self.cfg.replace(preserve_color=m)))
            for m in ("luminance", "histogram")
        ):
            out = st.image
            res[mode] = {
                "chroma_error": r6(C.chroma_error(out, st.content_rgb)),
                "luma_change": r6(float((C.luminance(out) - C.luminance(st.content_rgb)).abs().mean())),
                "texture_centroid": r6(C.spectral_centroid(out, st.content_rgb)),
            }
            if st is not plain:
                images.append(out)
        self.sheet("colour", images)  # content | plain | luminance | histogram
        return res

    def mask(self):
        plain = self._hazel_plain()
        masked = self.run("mask", self.hazelnut, [self.starry], mask=self.hazel_mask)
        feathered = self.run("mask_feather4", self.hazelnut, [self.starry], self.cfg.replace(feather=4), mask=self.hazel_mask)
        m = masked.mask
        res = {"mask_share": r6(float(m.mean()))}
        for key, st in (("plain", plain), ("mask", masked), ("mask_feather4", feathered)):
            d = (st.image - st.content_rgb).abs()
            res[key] = {
                "outside_max": r6(float(d[..., m[0, 0] == 0].max())),
                "outside_mean": r6(float(d[..., m[0, 0] == 0].mean())),
                "inside_mean": r6(float(d[..., m[0, 0] == 1].mean())),
            }
        self.sheet("mask", [plain.content_rgb, plain.image, masked.image, feathered.image])
        return res

    def combo(self):
        st = self.run(
            "combo_mask_luminance_two_styles",
            self.hazelnut,
            [self.starry, self.kandinsky],
            self.cfg.replace(preserve_color="luminance", feather=2),
            style_weights=[0.5, 0.5],
            mask=self.hazel_mask,
        )
        hard = C.prepare_mask(self.hazel_mask, tuple(st.content.shape[-2:]))
        d = (st.image - st.content_rgb).abs()
        far = C.feather_mask(hard, 6) < 1e-3  # well beyond the feathered edge
        inside = C.feather_mask(1 - hard, 6) < 1e-3  # well inside
        self.sheet("combo", [st.content_rgb, st.image])
        return {
            "outside_max_beyond_feather": r6(float(d[..., far[0, 0]].max())),
            "inside_mean_change": r6(float(d[..., inside[0, 0]].mean())),
            "inside_chroma_error": r6(C.chroma_error(st.image, st.content_rgb, inside.float())),
            "inside_luma_change": r6(float((C.luminance(st.image) - C.luminance(st.content_rgb)).abs()[inside].mean())),
        }

    def regions(self):
        styles = {"white": self.starry, "black": self.kandinsky}
        st = self.run("regions", self.hazelnut, None, region_map=self.hazel_mask, region_styles=styles)
        single = self._hazel_plain()

        def dist(image):
            with torch.no_grad():
                feats = st.extractor(image, st.config.style_layers)
            return {
                "relative": [[r6(v) for v in row] for row in st.style_loss.distances(feats)],
                "mse": [[r6(v) for v in row] for row in st.style_loss.distances(feats, relative=False)],
            }

        self.sheet("regions", [st.content_rgb, single.image, st.image])
        return {
            "regions": [{"label": r.label, "share": r6(r.share)} for r in st.regions],
            "rows_regions_columns_styles": ["starry_night", "kandinsky"],
            "content": dist(st.content),
            "single_style_starry": dist(single._image.detach()),
            "region_styles": dist(st._image.detach()),
        }

    def scale(self):
        res = {"painting": {}, "brick": {}, "plaid": {}}
        for key, style in (("painting", self.starry), ("brick", self.brick)):
            images = []
            for s in (0.5, 1.0, 2.0):
                st = self.run(f"scale_{key}_{s:g}", self.photo, [style], self.cfg.replace(style_scale=s))
                res[key][f"{s:g}"] = {
                    "style_shape": list(st.styles[0].shape[-2:]),
                    "texture_centroid": r6(C.spectral_centroid(st.image, st.content_rgb)),
                }
                images.append(st.image)
            self.sheet(f"scale_{key}", images)
        n = 64
        yy, xx = torch.meshgrid(torch.arange(float(n)), torch.arange(float(n)), indexing="ij")
        pat = 0.5 + 0.2 * torch.sin(2 * math.pi * xx / 8) + 0.2 * torch.sin(2 * math.pi * yy / 8)  # plaid
        style = torch.stack([pat, 0.3 + 0 * pat, 1 - pat])[None]
        start = (0.5 + 0.02 * torch.randn((1, 3, n, n), generator=torch.Generator().manual_seed(0))).clamp(0, 1)
        images = []
        for s in (0.5, 1.0, 2.0):
            cfg = self.cfg.replace(size=n, steps=30, lr=0.05, style_scale=s, content_weight=0.0, style_weight=1.0, resize="antialias")
            st = self.run(f"plaid_scale_{s:g}", torch.full((1, 3, n, n), 0.5), [style], cfg, init_image=start)
            res["plaid"][f"{s:g}"] = {
                "style_period_px": 8 * s,
                "expected_frequency": r6(1 / (8 * s)),
                "texture_centroid": r6(C.spectral_centroid(st.image)),
            }
            images.append(st.image)
        self.sheet("plaid", images)
        return res

    def strength(self):
        res = {}
        images = []
        base = StyleTransfer(self.photo, [self.starry], self.cfg.replace(steps=0))  # one yardstick for all
        for x in (0.0, 0.25, 0.5, 0.75, 1.0):
            st = self.run(f"strength_{x:g}", self.photo, [self.starry], self.cfg.replace(strength=x))
            terms = base.evaluate(st._image.detach())
            res[f"{x:g}"] = {
                "style_weight": r6(st.style_weight),
                "style_loss_at_preset_weight": r6(terms["style"]),
                "content_loss_at_preset_weight": r6(terms["content"]),
                "mean_change": r6(float((st.image - st.content_rgb).abs().mean())),
            }
            images.append(st.image)
        self.sheet("strength", images)
        return res

    def seed(self):
        cfg = self.cfg.replace(init="noise", steps=min(self.cfg.steps, 20), seed=11)
        a = self.run("seed_11a", self.photo, [self.starry], cfg).image
        b = self.run("seed_11b", self.photo, [self.starry], cfg).image
        c = self.run("seed_12", self.photo, [self.starry], cfg.replace(seed=12)).image
        return {"steps": cfg.steps, "same_seed_max_diff": r6(float((a - b).abs().max())), "other_seed_max_diff": r6(float((a - c).abs().max()))}

    def _hazel_plain(self):
        if not hasattr(self, "_plain_hazel"):
            self._plain_hazel = self.run("hazelnut_plain", self.hazelnut, [self.starry])
        return self._plain_hazel


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--photo", default="chelsea.png", help="content photo in shared/images/content")
    p.add_argument("--out", help="save result images and contact sheets in this folder")
    p.add_argument("--only", help=f"comma-separated subset of: {','.join(EXPERIMENTS)}")
    args = p.parse_args(argv)
    if not (SHARED / "MANIFEST.md").exists():
        print(json.dumps({"error": f"shared images not found at {SHARED}"}))
        return 2
    torch.manual_seed(0)
    demo = Demo(args)
    wanted = EXPERIMENTS if not args.only else tuple(s.strip() for s in args.only.split(","))
    t0 = time.perf_counter()
    result = {"size": args.size, "steps": args.steps, "lr": args.lr, "torch_threads": torch.get_num_threads()}
    for name in wanted:
        result[name] = getattr(demo, name)()
        print(f"[controls_demo] {name} done at {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    result["seconds"] = demo.seconds
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
