"""The optimizers of the stylization loop: Adam with Keras semantics and L-BFGS.

**KerasAdam** — Adam with TensorFlow/Keras semantics.

Keras (``tf.keras.optimizers.Adam``) updates, at step t (1-based)::

    m <- m + (1 - beta1) * (g - m)
    v <- v + (1 - beta2) * (g*g - v)
    alpha = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    x <- x - alpha * m / (sqrt(v) + eps)

so epsilon is added to the square root of the *uncorrected* second moment and bias correction is
folded into the step size ("epsilon hat" in Kingma & Ba, sec. 2). PyTorch's ``torch.optim.Adam``
adds epsilon to ``sqrt(v / (1 - beta2**t))`` instead; with the tutorial's eps = 0.1 the two give
visibly different images, so the seed preset uses this class.

**LBFGS** — L-BFGS on one image tensor, one iteration per call, so the loop can yield after each.

``torch.optim.LBFGS`` re-evaluates the objective at the start of every ``step()`` call, so running
it one iteration at a time (to report progress) costs two evaluations per iteration. This class
keeps the accepted point's loss and gradient and needs one evaluation per iteration (more only
when the Armijo backtracking rejects a step, which is rare after the first iterations).

The box constraint [0, 1] of an image is handled by the caller evaluating the loss at
:func:`clamp_inward` ``(x)``: the loss of ``clamp(x, 0, 1)``, whose gradient is let through outside
the box where a descent step moves the pixel back towards it. With a plain ``clamp`` that gradient
is zero and a pixel once pushed outside stays there for good: on astronaut x Seurat (256 px) the
default ended 1.085x above the seed's 1000-step loss; with :func:`clamp_inward` below it
(``benchmarks/bench_never_worse.py``, whose runs record the share of pixels left outside). Clamping ``x`` after
every iteration instead breaks the curvature pairs and converged markedly slower in our measurements.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch

#: Memory for curvature pairs: each pair holds two fp32 copies of the image. A 512 px image pair
#: is ~4 MB, a 4096 px one ~270 MB; the history is cut to fit this budget (at least 3 pairs).
MEMORY_BUDGET_BYTES = 256 * 1024 * 1024


def history_for(numel: int, wanted: int, budget: int = MEMORY_BUDGET_BYTES) -> int:
    """Curvature pairs to keep for an ``numel``-element fp32 tensor: ``wanted``, capped by ``budget``."""
    return max(1, min(wanted, max(3, budget // (2 * 4 * max(1, numel)))))


class _ClampInward(torch.autograd.Function):
    """``clamp(x, 0, 1)`` whose gradient outside [0, 1] is kept where it points back inside."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # Descent moves x along -grad: above 1 it helps only when grad > 0, below 0 when grad < 0.
        away = ((x > 1) & (grad < 0)) | ((x < 0) & (grad > 0))
        return grad.masked_fill(away, 0.0)


def clamp_inward(x: torch.Tensor) -> torch.Tensor:
    """The image ``clamp(x, 0, 1)`` for an optimizer that keeps ``x`` unconstrained (L-BFGS).

    The value is the clamp's; the gradient is the clamp's inside [0, 1] and, outside, the loss's
    gradient at the boundary wherever a descent step would move the pixel back towards [0, 1] (zero
    where it would push it further out). So no pixel is frozen outside the box, and a pixel the
    loss wants at the boundary stays clamped there.
    """
    return _ClampInward.apply(x)


#: closure() -> (total loss tensor, terms); it must leave the gradient in ``x.grad``.
Closure = Callable[[], Tuple[torch.Tensor, Dict[str, torch.Tensor]]]


class LBFGS:
    """Limited-memory BFGS with Armijo backtracking, on a single tensor.

    Args:
        x: the tensor being optimized (requires grad); updated in place.
        lr: scale of the trial step (1 is the quasi-Newton step).
        first_step: without curvature information yet (first iteration, or after a reset) the
            step is steepest descent scaled so that the largest change of an element is
            ``first_step`` (image units: 0.05 = 13 levels of 255). torch's ``min(1, 1/|g|_1)``
            with the seed's loss (~1e9) is a step of ~1e-11, too small to measure curvature.
        history: number of curvature pairs kept.
        max_backtracks: halvings of the step before the iteration gives up and resets the memory.
    """

    def __init__(
        self, x: torch.Tensor, lr: float = 1.0, history: int = 10, first_step: float = 0.05, max_backtracks: int = 10
    ) -> None:
        if not lr > 0 or not first_step > 0:
            raise ValueError(f"lr and first_step must be > 0, got {lr}, {first_step}")
        if not x.is_contiguous():
            raise ValueError("LBFGS updates a flat view of x: pass a contiguous tensor (x.contiguous())")
        self.x = x
        self.lr = float(lr)
        self.first_step = float(first_step)
        self.history = int(history)
        self.max_backtracks = int(max_backtracks)
        self.evaluations = 0
        #: Whether the last iteration found no decrease within its backtracks (x kept, memory reset):
        #: the step is then below what the loss can resolve (a 16-bit loss's rounding noise).
        self.last_failed = False
        self._s: List[torch.Tensor] = []
        self._y: List[torch.Tensor] = []
        self._rho: List[float] = []
        self._cached: Optional[Tuple[float, torch.Tensor, Dict[str, torch.Tensor]]] = None

    def _evaluate(self, closure: Closure) -> Tuple[float, torch.Tensor, Dict[str, torch.Tensor]]:
        with torch.enable_grad():
            loss, terms = closure()
        self.evaluations += 1
        grad = self.x.grad.detach().reshape(-1).to(torch.float32, copy=True)
        return float(loss.detach()), grad, {k: v.detach() for k, v in terms.items()}

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        q = -g
        alphas = []
        for s, y, rho in zip(reversed(self._s), reversed(self._y), reversed(self._rho)):
            a = rho * float(s.dot(q))
            alphas.append(a)
            q.add_(y, alpha=-a)
        if self._s:
            s, y = self._s[-1], self._y[-1]
            q.mul_(float(s.dot(y)) / float(y.dot(y)))
        for (s, y, rho), a in zip(zip(self._s, self._y, self._rho), reversed(alphas)):
            b = rho * float(y.dot(q))
            q.add_(s, alpha=a - b)
        return q

    @torch.no_grad()
    def step(self, closure: Closure) -> Dict[str, torch.Tensor]:
        """One iteration; returns the loss terms at the point it started from."""
        if self._cached is None:
            self._cached = self._evaluate(closure)
        f0, g0, terms0 = self._cached
        d = self._direction(g0)
        gd = float(g0.dot(d))
        if not gd < 0:  # not a descent direction (stale memory): fall back to steepest descent
            self._reset()
            d = -g0
            gd = float(g0.dot(d))
        t = self.lr if self._s else self.first_step / max(float(d.abs().max()), 1e-30)
        x0 = self.x.detach().clone()
        flat = self.x.view(-1)
        self.last_failed = False
        for _ in range(self.max_backtracks + 1):
            flat.copy_(x0.view(-1)).add_(d.to(flat.dtype), alpha=t)
            f1, g1, terms1 = self._evaluate(closure)
            if f1 <= f0 + 1e-4 * t * gd:
                break
            t *= 0.5
        else:  # no decrease found: keep the start point, forget the curvature pairs
            self.x.copy_(x0)
            self._reset()
            self._cached = (f0, g0, terms0)
            self.last_failed = True
            return terms0
        s = d.mul_(t)
        y = g1 - g0
        ys = float(y.dot(s))
        if ys > 1e-10 * float(y.dot(y)):  # positive curvature along s; otherwise skip the pair
            if len(self._s) == self.history:
                self._s.pop(0)
                self._y.pop(0)
                self._rho.pop(0)
            self._s.append(s)
            self._y.append(y)
            self._rho.append(1.0 / ys)
        self._cached = (f1, g1, terms1)
        return terms0

    def forget_point(self) -> None:
        """Re-evaluate the current point on the next step (the objective changed, e.g. its precision);
        the curvature pairs are kept."""
        self._cached = None

    def _reset(self) -> None:
        self._s.clear()
        self._y.clear()
        self._rho.clear()


class KerasAdam(torch.optim.Optimizer):
    """Adam with Keras' epsilon placement. Defaults are Keras' (lr 0.001, 0.9, 0.999, 1e-7)."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-7,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        if not 0.0 <= beta1 < 1.0 or not 0.0 <= beta2 < 1.0:
            raise ValueError(f"betas must be in [0, 1), got {beta1}, {beta2}")
        if not eps >= 0:
            raise ValueError(f"epsilon must be >= 0, got {eps}")
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, b1, b2, eps = group["lr"], group["beta1"], group["beta2"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.to(torch.float32) if p.grad.dtype != p.dtype else p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                m, v = state["m"], state["v"]
                m.add_(g - m, alpha=1.0 - b1)
                v.add_(g * g - v, alpha=1.0 - b2)
                alpha = lr * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
                p.addcdiv_(m, v.sqrt().add_(eps), value=-alpha)
        return loss
