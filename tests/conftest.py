import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(int(os.environ.get("PIXDIFF_THREADS", 2)))

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TAEF2 = SHARED / "weights" / "taef2"
PHOTOS = SHARED / "data" / "photos"


@pytest.fixture(scope="session")
def taef2_dir():
    if not (TAEF2 / "taef2_decoder.pth").exists():
        pytest.skip(f"TAEF2 weights not found at {TAEF2}")
    return TAEF2


@pytest.fixture(scope="session")
def photos():
    if not (PHOTOS / "val").is_dir():
        pytest.skip(f"photos not found at {PHOTOS}")
    return PHOTOS
