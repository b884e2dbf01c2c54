import os
import pathlib

import pytest

pytest_plugins = ["engine.testing"]

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
SPC_DATA = SHARED / "data" / "spc"


@pytest.fixture
def spc_data_dir():
    if not SPC_DATA.is_dir():
        pytest.skip(f"shared SPC data not found at {SPC_DATA}")
    return SPC_DATA


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
