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
    from pdfgc.families.pdfgc.training.trainer import use_sync_bn

    assert use_sync_bn(None, 2, "cuda") and use_sync_bn(True, 4, "cuda")
    assert not use_sync_bn(False, 2, "cuda")
    assert not use_sync_bn(None, 1, "cuda") and not use_sync_bn(True, 1, "cpu")  # one process: nothing to sync
    assert not use_sync_bn(None, 2, "cpu")    # gloo on CPU: torch's SyncBatchNorm refuses CPU tensors
    with pytest.raises(InputError, match="CUDA only"):
        use_sync_bn(True, 2, "cpu")


def test_sync_bn_conversion_keeps_weights_and_outputs():
    """Every BatchNorm of the PD-FGC networks becomes SyncBatchNorm with the same parameters, buffers and train/eval
    flags; the state dict loads into a plain model; without a process group the outputs are unchanged."""
    from pdfgc.families.pdfgc.model import PDFGC
    from pdfgc.families.pdfgc.testing import tiny_model
    from pdfgc.families.pdfgc.training.trainer import to_sync_batchnorm

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


@pytest.mark.parametrize("flag", [None, "--sync-bn"])
def test_two_gloo_processes_keep_batchnorm_and_refuse_sync_bn(prepared_corpus, tmp_path, flag):
    """torch's SyncBatchNorm raises on CPU tensors, so a 2-process gloo run cannot use it: by default the run keeps
    per-process BatchNorm and says so; asking for it is one `pdfgc: error:` line (exit 2 in each rank)."""
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(28500 + os.getpid() % 1000 + (flag is not None)), "-m", "pdfgc.cli", "train", "--data",
           str(prepared_corpus), "--stage", "appearance", "--config", "tiny", "--out", str(run), "--steps", "1",
           "--batch-size", "2", "--threads", "1", "--quiet"] + ([flag] if flag else [])
    r = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    if flag is None:
        assert r.returncode == 0, r.stderr[-3000:]
        assert "BatchNorm statistics per process (SyncBatchNorm off: it runs on CUDA only)" in r.stderr
        assert (run / "model.safetensors").is_file()
    else:
        assert r.returncode != 0
        assert "pdfgc: error: --sync-bn needs GPUs (torch's SyncBatchNorm runs on CUDA only)" in r.stderr


# ------------------------------------------------------------------------------------------------ the check script

def _check(tmp_path, *args, timeout=120):
    out = tmp_path / "gc"
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], cwd=REPO, env=_env(),
                       capture_output=True, text=True, timeout=timeout)
    report = json.loads((out / "gpu_check.json").read_text()) if (out / "gpu_check.json").is_file() else None
    return r, report, out


def _parts(report):
    return {p["part"]: p for p in report["parts"]}


def test_help_says_how_to_run_it_on_a_gpu():
    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "python benchmarks/gpu_check.py --out gpu_check" in r.stdout and "--device cpu --quick" in r.stdout
    for part in ("equivalence", "speed", "compile", "train_ddp", "nccl_same_gpu", "train_meshwarp"):
        assert part in r.stdout


@pytest.fixture(scope="module")
def gc():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cheap_parts_table_and_gpu_parts_skipped_without_cuda(tmp_path, gc):
    """env runs; without CUDA the GPU-only parts are skipped with the reason; the meshwarp training is 'not
    available' while its module is missing; JSON and Markdown tables are written; exit 0."""
    if torch.cuda.is_available():
        pytest.skip("this test is about a machine without CUDA")
    r, report, out = _check(tmp_path, "--device", "cpu", "--quick", "--parts",
                            "env,nccl_same_gpu,cpu_reference,train_meshwarp")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    parts = _parts(report)
    assert list(parts)[0] == "env" and set(parts) == {"env", "nccl_same_gpu", "train_meshwarp", "cpu_reference"}
    assert parts["env"]["status"] == "ok"
    items = {row["item"]: row for row in parts["env"]["rows"]}
    assert items["torch"]["value"].startswith(torch.__version__)
    assert items["SyncBatchNorm conversion"]["data"]["layers"] > 10
    for name in ("nccl_same_gpu", "cpu_reference"):
        assert parts[name]["status"] == "skipped" and "no CUDA" in parts[name]["reason"]
    # without --data or a cached corpus the training parts say so (or, while its module is missing, meshwarp's
    # says "not available")
    assert parts["train_meshwarp"]["status"] == "skipped"
    assert parts["train_meshwarp"]["reason"].startswith("not available" if not gc.meshwarp_available()
                                                        else "no prepared corpus")
    md = (out / "gpu_check.md").read_text()
    assert "| part | status | s | item | figure |" in md and "| nccl_same_gpu | skipped |" in md
    assert "torch" in r.stdout and "gpu_check: wrote" in r.stdout
    assert (out / "logs" / "env.log").is_file()


def test_a_part_past_its_timeout_is_recorded_and_the_rest_runs(tmp_path):
    """env is given a 1 s limit (timeout-scale 0.01): it is killed and recorded as timeout, the next part still
    runs, the exit status says something failed."""
    r, report, _ = _check(tmp_path, "--device", "cpu", "--parts", "env,compile", "--timeout-scale", "0.01",
                          "--budget", "30")
    parts = _parts(report)
    assert parts["env"]["status"] == "timeout" and "limit" in parts["env"]["reason"]
    assert parts["compile"]["status"] == "timeout"
    assert r.returncode == 1


def test_cuda_asked_without_a_gpu_skips_with_the_reason(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this test is about a machine without CUDA")
    r, report, _ = _check(tmp_path, "--device", "cuda", "--parts", "equivalence,speed,train")
    assert r.returncode == 0
    for p in report["parts"]:
        assert p["status"] == "skipped" and "no GPU" in p["reason"], p


def test_failure_reasons_and_ratios(gc):
    nccl = "torch.distributed.DistBackendError: NCCL error in: ...\nncclInvalidUsage: Duplicate GPU detected : " \
           "rank 1 and rank 0 both on CUDA device 1a000\n"
    assert gc.ddp_failure_reason(nccl).startswith("Duplicate GPU detected : rank 1 and rank 0")
    assert gc.ddp_failure_reason("x\nRuntimeError: CUDA error: invalid device ordinal\n").startswith(
        "invalid device ordinal")
    assert gc.ddp_failure_reason("pdfgc: error: --sync-bn needs GPUs\n") == "pdfgc: error: --sync-bn needs GPUs"
    assert gc.ddp_failure_reason("") == "no output"
    row = lambda key, fps: {"item": key, "value": "", "status": "ok", "data": {"key": key, "fps": fps}}
    parts = [{"part": "speed", "rows": [row("official/exact/e2e", 30.0), row("default/exact/e2e", 300.0)]},
             {"part": "cpu_reference", "rows": [row("official/exact/e2e", 2.0)]}]
    (ratio,) = gc.ratios(parts)
    assert ratio["data"]["ratio"] == pytest.approx(15.0) and "official exact e2e" in ratio["item"]


def test_finite_check_names_the_bad_value(gc):
    assert gc._finite([{"step": "1", "stage": "lips", "total": "1.5", "lr": "0.0001"}]) == (True, "")
    assert gc._finite([{"step": "1", "total": "1.5"}, {"step": "2", "total": "nan"}]) == (False, "total=nan at step 2")


def test_bad_part_name_exits_2(tmp_path):
    r, report, _ = _check(tmp_path, "--parts", "env,warp9")
    assert r.returncode == 2 and "unknown part(s) warp9" in r.stderr and report is None


def test_meshwarp_part_is_not_available_without_its_module(gc, monkeypatch, tmp_path):
    monkeypatch.setattr(gc, "MESHWARP_TRAIN", ("pdfgc.families.no_such_family.train", ["--data", "{data}"]))
    assert not gc.meshwarp_available()
    a = gc.parse_args(["--device", "cpu", "--quick", "--out", str(tmp_path)])
    with pytest.raises(gc.Skip, match="^not available"):
        gc.part_train_meshwarp(gc.Recorder(tmp_path / "p.json"), a)


@pytest.mark.slow
def test_the_whole_quick_check_on_cpu(tmp_path):
    """`python benchmarks/gpu_check.py --device cpu --quick`: every part that can run on a CPU runs and passes
    (about 5 minutes on this 2-core machine), the GPU-only parts are skipped with the reason."""
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine run the real check")
    r, report, out = _check(tmp_path, "--device", "cpu", "--quick", "--threads", "1", timeout=1500)
    parts = _parts(report)
    assert r.returncode == 0, "\n".join(f"{p['part']}: {p['status']} {p['reason']}" for p in report["parts"])
    for name in ("env", "equivalence", "speed", "data", "train", "train_ddp", "compile"):
        assert parts[name]["status"] == "ok", parts[name]
    for name in ("nccl_same_gpu", "cpu_reference"):
        assert parts[name]["status"] == "skipped" and "no CUDA" in parts[name]["reason"]
    rows = lambda name: {row["item"].strip(): row for row in parts[name]["rows"]}
    eq = rows("equivalence")
    assert eq["fixture exact"]["status"] == "ok" and eq["fast bf16 vs exact"]["data"]["psnr_db"] > 30
    assert eq["fast fp16 vs exact"]["status"] == "skip"
    train = rows("train")
    assert list(train) == ["tiny appearance", "tiny lips", "tiny pose_eye", "tiny emotion", "emotion resumed",
                           "appearance fp16 (GradScaler)"]
    assert all(train[k]["data"]["finite"] for k in list(train)[:4])
    assert train["emotion resumed"]["status"] == "ok" and train["appearance fp16 (GradScaler)"]["status"] == "skip"
    assert "SyncBatchNorm off: it runs on CUDA only" in rows("train_ddp")["torchrun 2 processes (gloo)"]["value"]
    speed = rows("speed")
    assert speed["official exact: end to end"]["data"]["frames"] == 22
    assert any(k.endswith("generator b2 channels-last") for k in speed)
    assert (out / "gpu_check.md").read_text().count("| ok |") >= 7


def test_speed_jobs_full_grid_path_with_a_tiny_model(gc, monkeypatch, tmp_path):
    """The full-size code path of the speed part (two end-to-end calls, fast mode, batches 1/8/32, channels-last)
    and the CPU reference's rows, on the tiny model so that it runs here; the rows carry the keys ratios() joins."""
    from pdfgc.families.pdfgc.testing import tiny_model

    monkeypatch.setattr(gc, "_models", lambda a: [("official", lambda: tiny_model(0))])
    monkeypatch.setattr(gc, "_speed_grid", lambda a, dev, cpu_reference=False: {
        "e2e_seconds": {"official": 0.5}, "batches": [1] if cpu_reference else [1, 3],
        "layouts": ["default"] if cpu_reference else ["default", "channels_last"], "repeats": 1,
        "modes": ["exact"] if cpu_reference else ["exact", "fast"]})
    a = gc.parse_args(["--device", "cpu", "--out", str(tmp_path), "--threads", "1"])
    gpu, cpu = gc.Recorder(tmp_path / "gpu.json"), gc.Recorder(tmp_path / "cpu.json")
    gc._speed_jobs(gpu, a, torch.device("cpu"))
    gc._speed_jobs(cpu, a, torch.device("cpu"), cpu_reference=True)
    rows = gpu.rows + cpu.rows
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    keys = {r["data"]["key"] for r in gpu.rows if "key" in r["data"]}
    assert {"official/exact/e2e", "official/fast/e2e", "official/fast/gen/b3/channels_last"} <= keys
    assert all(r["item"].startswith("CPU ") for r in cpu.rows)
    ratios = gc.ratios([{"part": "speed", "rows": gpu.rows}, {"part": "cpu_reference", "rows": cpu.rows}])
    assert {r["item"] for r in ratios} == {"GPU / CPU: official exact e2e", "GPU / CPU: official exact gen b1 default"}
