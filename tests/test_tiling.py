"""gafu.tiling: tile plans cover every pixel, blend weights sum to 1, a tiled identity is exact."""

from __future__ import annotations

import numpy as np
import pytest

from gafu.tiling import TilePlan, blend, ramp, run_tiled, tile_spans

LENGTHS = (513, 600, 1000, 1365, 2049, 4096, 4097)
SHAPES = ((700, 1100), (1365, 2048), (513, 4097), (1000, 600))


def _coverage(spans, length):
    count = np.zeros(length, dtype=int)
    for start, size in spans:
        count[start:start + size] += 1
    return count


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("offset", [0, 4, 100, 256, 508])
def test_spans_cover_overlap_and_start_on_the_phase(length, offset):
    tile, overlap = 512, 64
    spans = tile_spans(length, tile, overlap, offset=offset)
    assert (_coverage(spans, length) >= 1).all()  # every pixel covered
    assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == length
    assert all(0 < size <= tile for _, size in spans)
    assert all(start % 4 == 0 for start, _ in spans)  # the networks' stride-2 phase
    for (s0, n0), (s1, _) in zip(spans, spans[1:]):
        assert s0 < s1 and s0 + n0 - s1 >= overlap


def test_spans_are_the_ones_fast_always_used():
    """The even plan is unchanged (fast's tiled outputs depend on it byte for byte)."""
    assert tile_spans(600, 512, 64) == [(0, 336), (264, 336)]
    assert tile_spans(2049, 512, 64) == [(0, 468), (396, 468), (792, 468), (1184, 468), (1584, 465)]
    assert tile_spans(4097, 1792, 128) == [(0, 1460), (1320, 1460), (2640, 1457)]
    assert tile_spans(1365, 512, 128) == [(0, 444), (308, 444), (616, 444), (924, 441)]
    assert tile_spans(300, 512, 64) == [(0, 300)]


def test_offset_moves_the_seams():
    plain = tile_spans(2049, 512, 64)
    shifted = tile_spans(2049, 512, 64, offset=200)
    assert {s for s, _ in plain[1:]}.isdisjoint({s for s, _ in shifted[1:]})


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("offset", [(0, 0), (8, 0), (132, 260), (400, 4)])
def test_normalized_weights_sum_to_one_everywhere(shape, offset):
    plan = TilePlan.make(*shape, tile=512, overlap=128, offset=offset)
    assert len(plan) > 1
    total = plan.weight_sum()
    assert (total > 0).all()  # covered, with a positive weight
    acc = np.zeros(shape)
    for t in plan:
        w = plan.normalized_weight(t, total)
        assert w.shape == (t.height, t.width) and (w > 0).all()
        acc[t.slices] += w
    np.testing.assert_allclose(acc, 1.0, rtol=0, atol=1e-12)


def test_weights_ramp_only_where_tiles_meet():
    r = ramp(10, lo=True, hi=False, overlap=4)
    np.testing.assert_allclose(r, [0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1, 1, 1], rtol=1e-6)
    assert (ramp(10, False, False, 4) == 1).all()
    plan = TilePlan.make(700, 1100, 512, 64)
    first = next(iter(plan))
    w = plan.weight(first)
    assert w[0, 0] == 1.0  # the image's corner: no neighbour there
    assert w[-1, -1] < 0.05  # the corner shared with three other tiles


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("offset", [(0, 0), (132, 260)])
def test_tiled_identity_reproduces_the_input_exactly(shape, offset):
    arr = np.random.default_rng(1).random(shape + (3,), dtype=np.float32)
    seen = []

    def ident(part):
        seen.append(part.shape[:2])
        return part.copy()

    out, tiles = run_tiled(ident, arr, 512, 128, offset=offset, dtype=np.float64)
    assert tiles == len(seen) > 1
    assert np.array_equal(out.astype(np.float32), arr)  # bit for bit
    out32, _ = run_tiled(ident, arr, 512, 128, offset=offset)  # float32 blend: to rounding
    np.testing.assert_allclose(out32, arr, rtol=1e-6, atol=0)


def test_blend_is_the_weighted_mean_of_the_tiles():
    """Independent reference: each pixel is sum(w_i * tile_i) / sum(w_i), here with distinct tiles."""
    plan = TilePlan.make(600, 700, 512, 64)
    parts = [np.full((t.height, t.width), float(i + 1)) for i, t in enumerate(plan)]
    out = blend(plan, parts, dtype=np.float64)
    num, den = np.zeros((600, 700)), np.zeros((600, 700))
    for t, p in zip(plan, parts):
        w = plan.weight(t).astype(np.float64)
        num[t.slices] += w * p
        den[t.slices] += w
    np.testing.assert_allclose(out, num / den, rtol=1e-12)
    assert out.min() == 1.0 and out.max() == float(len(plan))  # corners belong to one tile each
    assert len(np.unique(out)) > len(plan)  # the overlaps are blends, not a choice of tile


def test_small_images_go_through_whole():
    calls = []
    arr = np.zeros((300, 3000, 3), np.float32)  # 0.9 MP < 1024**2 although wider than a tile

    def fn(a):
        calls.append(a.shape)
        return a

    out, tiles = run_tiled(fn, arr, 1024)
    assert tiles == 1 and calls == [(300, 3000, 3)] and out is arr


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="offset"):
        tile_spans(1000, 512, 64, offset=3)
    with pytest.raises(ValueError, match="offset"):
        tile_spans(1000, 512, 64, offset=-4)
    with pytest.raises(ValueError, match="too small"):
        tile_spans(1000, 64, 60)
    with pytest.raises(ValueError, match="no tiles"):
        blend(TilePlan.make(600, 600, 512), [])
