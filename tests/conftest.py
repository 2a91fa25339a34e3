import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PDFGC_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
REFERENCE = SHARED / "reference"
FIXTURE = REFERENCE / "official_fixture"

# deliberate thread count: on a busy 2-core box the default can make small ops 10-100x slower
torch.set_num_threads(int(os.environ.get("PDFGC_TEST_THREADS", "2")))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny():
    from pdfgc.testing import tiny_model
    return tiny_model(0)


@pytest.fixture(scope="session")
def tiny_pipe(tiny):
    from pdfgc.pipeline import TalkingHeadPipeline
    return TalkingHeadPipeline(tiny, device="cpu", threads=torch.get_num_threads())


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path
