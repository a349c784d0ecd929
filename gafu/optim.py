"""Adam with TensorFlow/Keras semantics.

Keras (``tf.keras.optimizers.Adam``) updates, at step t (1-based)::

    m <- m + (1 - beta1) * (g - m)
    v <- v + (1 - beta2) * (g*g - v)
    alpha = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    x <- x - alpha * m / (sqrt(v) + eps)

so epsilon is added to the square root of the *uncorrected* second moment and bias correction is
folded into the step size ("epsilon hat" in Kingma & Ba, sec. 2). PyTorch's ``torch.optim.Adam``
adds epsilon to ``sqrt(v / (1 - beta2**t))`` instead; with the tutorial's eps = 0.1 the two give
visibly different images, so the seed preset uses this class.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch


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
