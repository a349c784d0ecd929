"""Speed machinery of the stylization loop: reduced precision, memory layout, allocator.

None of this changes what is optimized (the seed's loss); it changes how fast a step runs:

- **Reduced precision with fp32 master image** (``precision='bf16'`` or ``'fp16'``): a copy of the
  VGG19 extractor with weights in bf16/fp16 and ``channels_last`` layout (oneDNN on CPU, cuDNN NHWC
  on CUDA). The image being optimized, the targets, the Adam state, the Gram matrices and the loss
  stay fp32; only the network's activations and their gradients are 16-bit.
- **Gram matrix as one autograd function** (:func:`gram_lowp`): one matmul forward, one backward
  (autograd's generic ``bmm`` backward does two plus an add), 16-bit operands with fp32
  accumulation, the result returned in fp32.
- **No page faults per step** (:func:`keep_freed_memory`): glibc gives large blocks (> 32 MB) back
  to the kernel on ``free`` and the next step faults them in again, zero-filled; at 512 px that was
  7-15 % of a step in system time. Inside the context, freed memory is kept for reuse.

Everything here is device-agnostic (the dtype policy looks at the tensor's device); the fp32 path
of the seed preset does not use this module at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import threading
from typing import Dict, Iterator, Optional

import torch

#: Names accepted by ``StyleConfig.precision`` and ``--precision`` ('auto': see resolve_precision).
PRECISIONS = ("fp32", "bf16", "fp16", "auto")

_DTYPES: Dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def dtype_of(precision: str) -> torch.dtype:
    """torch dtype of a precision name ('fp32', 'bf16', 'fp16')."""
    return _DTYPES[precision]


def cpu_has_native_bf16() -> bool:
    """True if this CPU computes bf16 dot products in hardware (AVX512-BF16 or AMX)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:
            pass
    return False


def precision_supported(precision: str, device: torch.device) -> Optional[str]:
    """None if ``precision`` can run on ``device``, else a one-line reason."""
    if precision in ("fp32", "auto"):
        return None
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return "this CUDA device has no bf16 support; use precision fp16"
        return None
    if device.type == "cpu":
        return None  # oneDNN runs bf16 natively with AVX512-BF16/AMX and emulates it elsewhere (slower)
    return f"reduced precision is not set up for device type '{device.type}'"


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run uses: 'auto' becomes bf16 where the hardware computes it natively
    (CUDA with bf16, else fp16; CPUs with AVX512-BF16 or AMX), fp32 elsewhere (bf16 emulated on
    an older CPU is slower than fp32). Other names are checked and returned."""
    from ..errors import GafuError

    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_has_native_bf16():
            return "bf16"
        return "fp32"
    problem = precision_supported(precision, device)
    if problem is not None:
        raise GafuError(problem)
    return precision


# ---------------------------------------------------------------------------------------------
# Gram matrix of 16-bit features


class _GramT(torch.autograd.Function):
    """``G = X^T X`` for ``X`` of shape (B, N, C) (N = H*W locations); one matmul each way.

    The (B, N, C) view of a channels_last activation is contiguous, so neither matmul copies its
    operands and the gradient comes back in the activation's own layout (a gradient in another
    layout makes the following elementwise ops - gradient adds, ReLU backward - take a slow
    strided path). Autograd's generic ``bmm`` backward would also compute ``X dG`` and ``X dG^T``
    separately and add them; with ``dG`` made symmetric first it is one matmul.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.bmm(x.transpose(1, 2), x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        sym = grad + grad.transpose(1, 2)
        return torch.bmm(x, sym.to(x.dtype))


def gram_lowp(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of 16-bit ``(B, C, H, W)`` features, normalised by H*W, returned in fp32.

    Same definition as :func:`gafu.losses.gram_matrix`. Where the 16-bit matmul would lose range or
    precision the features are widened to fp32 first:

    - fp16 anywhere: Gram entries of VGG19 activations exceed fp16's range (65504);
    - on CUDA: fp32 (TF32 where allowed) matmuls are cheap next to the convolutions.

    On the CPU, bf16 operands are exact and accumulate in fp32 (oneDNN); the Gram is rounded to bf16
    once on output (relative error <= 2^-9 per entry), then normalised in fp32.
    """
    b, c, h, w = features.shape
    x = features.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view for channels_last features
    if not (features.dtype == torch.bfloat16 and features.device.type == "cpu"):
        x = x.float()
    return _GramT.apply(x).float() / float(h * w)


# ---------------------------------------------------------------------------------------------
# Allocator


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# What glibc's dynamic thresholds settle at once a large block has been freed (64-bit): restoring
# these rather than the 128 kB start values keeps later medium-sized allocations off mmap.
_GLIBC_SETTLED_MMAP = 32 * 1024 * 1024
_GLIBC_SETTLED_TRIM = 2 * _GLIBC_SETTLED_MMAP
_alloc_lock = threading.Lock()
_alloc_depth = 0


def _libc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018  (glibc only; musl has no mallopt)
        libc.malloc_trim  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def keep_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Keep memory freed inside the block in the process heap instead of returning it to the kernel.

    glibc serves blocks above its mmap threshold (dynamic, at most 32 MB) with ``mmap`` and unmaps
    them on ``free``; an optimization step at 512 px allocates and frees the same few hundred MB
    every step, and each page is faulted in and zero-filled again by the kernel. Inside this block
    the thresholds are raised so freed blocks are reused. On exit the thresholds are set to the values
    glibc's own dynamic adjustment settles at (32 MB / 64 MB) and ``malloc_trim(0)`` returns the
    cached memory. Peak memory is unchanged (measured) for a run of one size; not for runs whose
    buffer sizes change (see :func:`return_freed_memory`).

    Yields whether the allocator was tuned (False on non-glibc platforms, or when ``enabled`` is
    False). Re-entrant (the outermost block's setting holds); numerics are untouched.
    """
    with _tuned_allocator(enabled, mmap_threshold=1 << 30, trim_threshold=(1 << 31) - 1) as tuned:
        yield tuned


#: :func:`return_freed_memory`'s thresholds: blocks from 1 MB up get their own mapping.
_BOUNDED_MMAP = 1024 * 1024


@contextlib.contextmanager
def return_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Give every large freed block (>= 1 MB) back to the kernel at once, inside the block.

    For runs whose buffer sizes change from step to step or stage to stage (tiles on a moving grid,
    coarse-to-fine stages): with glibc's dynamic threshold (up to 32 MB) those buffers come from the
    heap, where blocks of ever-different sizes fragment it and the process grows step after step
    past its memory plan (benchmarks/bench_print_memory.py, a 2048 px run planned into 2 GB: peak
    2.81 GB, against 1.72 GB with these thresholds). Costs page faults: that run took 1.24x as long.
    Same contract as :func:`keep_freed_memory`.
    """
    with _tuned_allocator(enabled, mmap_threshold=_BOUNDED_MMAP, trim_threshold=_BOUNDED_MMAP) as tuned:
        yield tuned


@contextlib.contextmanager
def _tuned_allocator(enabled: bool, *, mmap_threshold: int, trim_threshold: int) -> Iterator[bool]:
    global _alloc_depth
    libc = _libc() if enabled else None
    if libc is None:
        yield False
        return
    with _alloc_lock:
        if _alloc_depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
            libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
        _alloc_depth += 1
    try:
        yield True
    finally:
        with _alloc_lock:
            _alloc_depth -= 1
            if _alloc_depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_SETTLED_MMAP)
                libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_SETTLED_TRIM)
                libc.malloc_trim(0)
