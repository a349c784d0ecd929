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
