"""The prepared GPU check (`benchmarks/gpu_check.py`) and the SyncBatchNorm switch of `pdfgc train`.

Fast: SyncBatchNorm conversion and its default, the check's CLI and bookkeeping (timeouts, failures, skipped GPU
parts, the JSON/Markdown table) on cheap parts. Slow (`--run-slow`): the whole `--device cpu --quick` run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pdfgc.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------------------------ SyncBatchNorm

def test_sync_bn_default_is_on_under_ddp_on_gpus_only():
    from pdfgc.training.trainer import use_sync_bn

    assert use_sync_bn(None, 2, "cuda") and use_sync_bn(True, 4, "cuda")
    assert not use_sync_bn(False, 2, "cuda")
    assert not use_sync_bn(None, 1, "cuda") and not use_sync_bn(True, 1, "cpu")  # one process: nothing to sync
    assert not use_sync_bn(None, 2, "cpu")    # gloo on CPU: torch's SyncBatchNorm refuses CPU tensors
    with pytest.raises(InputError, match="CUDA only"):
        use_sync_bn(True, 2, "cpu")


def test_sync_bn_conversion_keeps_weights_and_outputs():
    """Every BatchNorm of the PD-FGC networks becomes SyncBatchNorm with the same parameters, buffers and train/eval
    flags; the state dict loads into a plain model; without a process group the outputs are unchanged."""
    from pdfgc.model import PDFGC
    from pdfgc.testing import tiny_model
    from pdfgc.training.trainer import to_sync_batchnorm

    torch.manual_seed(0)
    model = tiny_model(0)
    bn = torch.nn.modules.batchnorm._BatchNorm
    n_bn = sum(isinstance(m, bn) for m in model.modules())
    assert n_bn > 10
    model.appearance.train()
    x = torch.rand(2, 3, model.config.image_size, model.config.image_size) * 2 - 1
    with torch.no_grad():
        ref_train = model.appearance(x)[0].clone()
    model.appearance.eval()
    with torch.no_grad():
        ref_eval = model.appearance(x)[0].clone()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules() if isinstance(m, bn)]

    assert to_sync_batchnorm(model) == n_bn
    syncs = [m for m in model.modules() if isinstance(m, bn)]
    assert len(syncs) == n_bn and all(isinstance(m, torch.nn.SyncBatchNorm) for m in syncs)
    assert [m.training for m in syncs] == modes
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(model.appearance(x)[0], ref_eval)
    model.appearance.train()
    with torch.no_grad():
        assert torch.allclose(model.appearance(x)[0], ref_train, atol=1e-6)
    plain = PDFGC(model.config)
    plain.load_state_dict(model.state_dict())   # checkpoints keep BatchNorm's keys
    assert to_sync_batchnorm(model) == 0       # already converted
