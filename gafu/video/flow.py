"""Optical flow between frames (OpenCV), occlusion masks and warping.

Convention: ``flow(a, b)`` is a HxWx2 float32 field ``f`` (x, y components) with
``a(p) ~ b(p + f(p))`` for every pixel ``p`` of ``a``; :func:`warp` ``(b, f)`` then resamples ``b``
onto ``a``'s pixel grid (``cv2.remap``). To carry the previous frame's result into frame t, use
the *backward* flow ``flow(frame_t, frame_t-1)``.

Methods (no model files; both in ``opencv-python-headless``):
    - ``dis``: Dense Inverse Search (Kroeger et al. 2016), ``cv2.DISOpticalFlow``, the MEDIUM
      preset: accurate enough for video stylization and fast on a CPU (a few ms at 256 px).
    - ``farneback``: Farneback (2003) polynomial expansion, ``cv2.calcOpticalFlowFarneback``:
      slower, smoother.
    - ``none``: zero flow (every pixel stays where it is), everything marked consistent.

Occlusions (:func:`consistency_mask`) come from the forward-backward check of Sundaram et al.
(2010), as Ruder et al. (2016) use it: a pixel of frame t is trusted when following the backward
flow and then the forward flow brings it back (within ``0.01 (|wb|^2 + |wf|^2) + 0.5`` px^2); also
untrusted are pixels whose flow leaves the frame (what a camera pan brings into view) and motion
boundaries (``|grad wb|^2 > 0.01 |wb|^2 + 0.002``).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..errors import GafuError, unknown_name

FLOW_METHODS = ("dis", "farneback", "none")


def check_method(method: str) -> str:
    if method not in FLOW_METHODS:
        raise unknown_name("flow method", str(method), FLOW_METHODS)
    return method


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.dtype != np.uint8:
        frame = np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


class FlowEstimator:
    """Dense optical flow with one OpenCV method; reusable for every frame pair of a clip."""

    def __init__(self, method: str = "dis") -> None:
        self.method = check_method(method)
        self._dis = None

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow ``f`` with ``a(p) ~ b(p + f(p))`` (HxWx2 float32); frames HxWx3 uint8 or float [0, 1]."""
        import cv2

        if a.shape[:2] != b.shape[:2]:
            raise GafuError(f"frames differ in size: {a.shape[1]}x{a.shape[0]} and {b.shape[1]}x{b.shape[0]}")
        h, w = a.shape[:2]
        if self.method == "none":
            return np.zeros((h, w, 2), np.float32)
        ga, gb = _gray(a), _gray(b)
        if self.method == "dis":
            if self._dis is None:
                self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            return self._dis.calc(ga, gb, None)
        return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 4, 15, 3, 5, 1.2, 0)

    def pair(self, current: np.ndarray, previous: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(backward flow current -> previous, mask of the pixels of ``current`` it carries reliably)."""
        back = self(current, previous)
        if self.method == "none":
            return back, np.ones(back.shape[:2], np.float32)
        fwd = self(previous, current)
        return back, consistency_mask(back, fwd)


def _grid(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def warp(image: np.ndarray, flow: np.ndarray, *, border: str = "replicate") -> np.ndarray:
    """Resample ``image`` (HxWxC) at ``p + flow(p)``: bilinear, ``cv2.remap``. Same dtype out.

    Pixels whose source lies outside take the nearest edge pixel (``border='replicate'``) or 0
    (``'constant'``); the occlusion mask says which ones to trust.
    """
    import cv2

    h, w = flow.shape[:2]
    if image.shape[:2] != (h, w):
        raise GafuError(f"image {image.shape[1]}x{image.shape[0]} does not fit flow {w}x{h}")
    xs, ys = _grid(h, w)
    mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    src = np.ascontiguousarray(image)
    out = cv2.remap(src, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=mode)
    return out.reshape(image.shape)


def consistency_mask(
    back: np.ndarray,
    fwd: np.ndarray,
    *,
    motion_boundaries: bool = True,
    boundary_tol: float = 0.002,
) -> np.ndarray:
    """1 where the backward flow of frame t is trusted, 0 where it is not (HxW float32).

    ``back``: flow t -> t-1; ``fwd``: flow t-1 -> t. Untrusted: forward-backward inconsistent
    (disoccluded: visible in t, hidden in t-1), flowing out of the frame, motion boundaries.
    """
    h, w = back.shape[:2]
    xs, ys = _grid(h, w)
    tx, ty = xs + back[..., 0], ys + back[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    fwd_at = warp(fwd, back)  # forward flow at the point each pixel came from
    s = back + fwd_at
    err = (s**2).sum(-1)
    mag = (back**2).sum(-1) + (fwd_at**2).sum(-1)
    ok = inside & (err <= 0.01 * mag + 0.5)
    if motion_boundaries:
        gu = np.gradient(back[..., 0])
        gv = np.gradient(back[..., 1])
        grad = gu[0] ** 2 + gu[1] ** 2 + gv[0] ** 2 + gv[1] ** 2
        ok &= grad <= 0.01 * (back**2).sum(-1) + boundary_tol
    return ok.astype(np.float32)


def occlusion_mask(current: np.ndarray, previous: np.ndarray, method: str = "dis",
                   estimator: Optional[FlowEstimator] = None) -> np.ndarray:
    """The trusted-pixel mask of ``current`` w.r.t. ``previous`` (1 = carried over by the flow)."""
    est = estimator or FlowEstimator(method)
    return est.pair(current, previous)[1]
