#!/usr/bin/env python
"""Does L-BFGS reach the seed's loss in fewer steps if the image is parameterized differently?

    python benchmarks/lbfgs_parameterizations.py [--size 512] [--steps 100] [--modes pixel,pyramid,fourier,wolfe]

Each mode minimizes the seed's loss (gafu's fast preset: 16-bit VGG19 where native, fp32 loss) from
the content image for ``--steps`` iterations and records the fp32 loss every 20 steps (evaluation
time excluded from the seconds):

- ``pixel``: gafu's own L-BFGS on the pixels (what ``--preset fast`` does).
- ``pyramid``: the image is content + a Laplacian-style pyramid of offsets at 1, 1/2, 1/4, 1/8, 1/16
  resolution (bilinear upsampling); the gradient reaching the coarse levels is summed over many
  pixels, which boosts low frequencies (a preconditioner).
- ``fourier``: content + inverse FFT of a spectrum scaled by 1/frequency (the decorrelated
  parameterization of feature-visualization work); boosts low frequencies more strongly.
- ``wolfe``: ``torch.optim.LBFGS`` with its strong-Wolfe line search on the pixels (x axis: its
  function evaluations, which is what costs time).

Prints one JSON object. Used for the speed issue's note: if low frequencies converged slowly,
the pyramid/Fourier runs would get ahead of ``pixel``; they do not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from gafu import StyleTransfer, get_preset
    from gafu.lbfgs import LBFGS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--content", default=str(ROOT / "gafu" / "data" / "chelsea.jpg"))
    p.add_argument("--style", default=str(ROOT / "gafu" / "data" / "vangogh_starry_night.jpg"))
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--modes", default="pixel,pyramid,fourier,wolfe")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    st = StyleTransfer(args.content, [args.style], get_preset("fast").replace(size=args.size))
    content = st.content.detach().clone()
    H, W = content.shape[-2:]
    result = {"tool": "benchmarks/lbfgs_parameterizations.py", "size": args.size, "shape": [H, W],
              "precision": st.precision, "threads": torch.get_num_threads(), "modes": {}}

    def fp32_loss(img: torch.Tensor) -> float:
        with torch.no_grad():
            return float(st.loss_terms(img.clamp(0, 1))["total"])

    for mode in [m for m in args.modes.split(",") if m]:
        if mode == "pyramid":
            factors = (1, 2, 4, 8, 16)
            shapes = [(1, 3, -(-H // f), -(-W // f)) for f in factors]

            def build(p, shapes=shapes, factors=factors):
                img, o = content, 0
                for f, s in zip(factors, shapes):
                    k = torch.Size(s).numel()
                    v = p[o:o + k].view(s)
                    o += k
                    img = img + (v if f == 1 else F.interpolate(v, size=(H, W), mode="bilinear", align_corners=False))
                return img

            n = sum(torch.Size(s).numel() for s in shapes)
        elif mode == "fourier":
            fh, fw = H, W // 2 + 1
            freq = torch.sqrt(torch.fft.fftfreq(H)[:, None] ** 2 + torch.fft.rfftfreq(W)[None, :] ** 2)
            scale = 1.0 / freq.clamp_min(1.0 / max(H, W))
            scale = scale / scale.mean()

            def build(p, scale=scale, fh=fh, fw=fw):
                spec = torch.view_as_complex(p.view(1, 3, fh, fw, 2)) * scale
                return content + torch.fft.irfft2(spec, s=(H, W), norm="ortho")

            n = 2 * 3 * fh * fw
        elif mode in ("pixel", "wolfe"):
            def build(p):
                return content + p.view_as(content)

            n = content.numel()
        else:
            raise SystemExit(f"unknown mode {mode!r}")
        param = torch.zeros(n, requires_grad=True)
        curve = {}
        paused = 0.0
        t0 = time.perf_counter()
        evals = [0]

        def closure(param=param, build=build):
            param.grad = None
            evals[0] += 1
            terms = st.loss_terms(build(param).clamp(0, 1), precision=st.precision)
            terms["total"].backward()
            return terms["total"]

        def record(i):
            nonlocal paused
            el = time.perf_counter() - t0 - paused
            p0 = time.perf_counter()
            curve[i] = {"seconds": round(el, 2), "fp32_loss": fp32_loss(build(param).detach()), "evaluations": evals[0]}
            paused += time.perf_counter() - p0
            print(f"[lbfgs_parameterizations] {mode} {i}: {curve[i]}", file=sys.stderr, flush=True)

        if mode == "wolfe":
            # One call: torch re-evaluates at the start of every step() call, so iterating inside it
            # is its cheapest use. x axis: function evaluations (an iteration may use several).
            opt = torch.optim.LBFGS([param], lr=1, max_iter=args.steps, max_eval=args.steps, history_size=30,
                                    line_search_fn="strong_wolfe", tolerance_grad=0, tolerance_change=0)

            def counted(closure=closure):
                loss = closure()
                if evals[0] % args.every == 0:
                    record(evals[0])
                return loss

            opt.step(counted)
        else:
            opt = LBFGS(param, lr=1.0, history=30)

            def with_terms(closure=closure):
                return closure(), {}

            for i in range(1, args.steps + 1):
                opt.step(with_terms)
                if i % args.every == 0:
                    record(i)
        result["modes"][mode] = curve
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
