from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_IMAGES = ROOT.parent / "shared" / "images"
DATA = ROOT / "gafu" / "data"


@pytest.fixture(scope="session")
def shared_images() -> Path:
    if not (SHARED_IMAGES / "MANIFEST.md").exists():
        pytest.skip(f"shared test images not found at {SHARED_IMAGES}")
    return SHARED_IMAGES


@pytest.fixture(scope="session")
def content_path() -> Path:
    return DATA / "chelsea.jpg"


@pytest.fixture(scope="session")
def style_path() -> Path:
    return DATA / "vangogh_starry_night.jpg"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def tiny_vgg19_weights(seed: int = 0, widths=(8, 16, 16, 32, 32)) -> dict:
    """Random He-initialised VGG19 conv weights with few channels per block: the real network's
    layer names, depth and pooling, at a fraction of the cost (for tests that check plumbing,
    not pictures)."""
    from gafu.weights import CONV_LAYERS

    g = torch.Generator().manual_seed(seed)
    out, cin = {}, 3
    for name, _, _ in CONV_LAYERS:
        cout = widths[int(name[5]) - 1]
        w = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5 / 255.0
        out[name] = (w, torch.zeros(cout))
        cin = cout
    return out


@pytest.fixture(scope="session")
def tiny_vgg():
    """A small random-init VGG19 extractor returning the seed's style and content layers."""
    from gafu.config import SEED_CONTENT_LAYERS, SEED_STYLE_LAYERS
    from gafu.vgg import VGG19Features

    return VGG19Features(SEED_STYLE_LAYERS + SEED_CONTENT_LAYERS, weights=tiny_vgg19_weights())


def free_port() -> int:
    """A free TCP port on the loopback interface (for servers the tests start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def output_files(folder) -> dict:
    """relative path -> bytes of every PNG a job wrote under ``folder`` (no manifest, no lock)."""
    from pathlib import Path

    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def manifest_keys(folder) -> list:
    """What identifies a job's result: (output, output sha256, settings hash) of every manifest row, sorted."""
    from pathlib import Path

    from gafu.jobs import read_rows

    return sorted((r["output"], r["output_sha256"], r["settings_hash"]) for r in read_rows(Path(folder) / "manifest.jsonl"))
