import math

import torch

from gafu.optim import KerasAdam


def keras_adam_reference(x, grads, lr, b1, b2, eps):
    """Keras Adam written out with plain floats, one element at a time."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        m = m + (1 - b1) * (g - m)
        v = v + (1 - b2) * (g * g - v)
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        x = x - alpha * m / (math.sqrt(v) + eps)
    return x


def test_keras_adam_matches_hand_computed_steps():
    x0 = [0.5, -1.0, 2.0, 0.0]
    grads = [[0.3, -2.0, 1e-3, 5.0], [0.1, 0.4, -1e-3, 5.0], [-0.2, 0.0, 2e-3, -5.0]]
    p = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = KerasAdam([p], lr=0.02, beta1=0.99, beta2=0.999, eps=0.1)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    for i in range(4):
        ref = keras_adam_reference(x0[i], [g[i] for g in grads], 0.02, 0.99, 0.999, 0.1)
        assert abs(p[i].item() - ref) < 1e-12


def test_first_step_value_by_hand():
    # t=1: m = 0.01 g, v = 0.001 g^2, alpha = lr*sqrt(0.001)/0.01
    g, lr = 2.0, 0.02
    expected = -(lr * math.sqrt(0.001) / 0.01) * (0.01 * g) / (math.sqrt(0.001 * g * g) + 0.1)
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = KerasAdam([p], lr=lr, beta1=0.99, beta2=0.999, eps=0.1)
    p.grad = torch.tensor([g], dtype=torch.float64)
    opt.step()
    assert abs(p.item() - expected) < 1e-15


def test_differs_from_torch_adam_with_large_epsilon():
    p1 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    p2 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    k = KerasAdam([p1], lr=0.02, beta1=0.99, eps=0.1)
    t = torch.optim.Adam([p2], lr=0.02, betas=(0.99, 0.999), eps=0.1)
    for _ in range(3):
        for p in (p1, p2):
            p.grad = torch.tensor([0.5, -0.01, 3.0], dtype=torch.float64)
        k.step()
        t.step()
    assert (p1 - p2).abs().max().item() > 1e-3


def test_matches_torch_adam_when_epsilon_is_zero():
    # Without epsilon both formulations are the same algorithm.
    p1 = torch.ones(4, dtype=torch.float64, requires_grad=True)
    p2 = torch.ones(4, dtype=torch.float64, requires_grad=True)
    k = KerasAdam([p1], lr=0.1, beta1=0.9, beta2=0.99, eps=0.0)
    t = torch.optim.Adam([p2], lr=0.1, betas=(0.9, 0.99), eps=0.0)
    for i in range(5):
        g = torch.tensor([0.3, -0.7, 1.1, 2.0], dtype=torch.float64) * (i + 1)
        p1.grad, p2.grad = g.clone(), g.clone()
        k.step()
        t.step()
    torch.testing.assert_close(p1, p2)
