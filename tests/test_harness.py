"""The training harness (pdfgc.training.harness) and the one safetensors reader (pdfgc.tensorfile): checkpoint
round-trips, the resume policy, the CSV log, the schedules and the time budget, on a tiny model (fast)."""
import math

import numpy as np
import pytest
import torch

from pdfgc.errors import CheckpointError, InputError
from pdfgc.tensorfile import open_tensors, read_metadata, read_tensors
from pdfgc.training import harness as H

KIND = "test-tiny"


# ---------------------------------------------------------------------------------------------- a tiny trainer

def _data(step: int):
    g = torch.Generator().manual_seed(1000 + step)   # a batch is a function of its step, as in the trainers
    x = torch.randn(8, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(8, 1, generator=g)


def _train(run, steps, resume=False, budget=None, clock=None, logs=None, ckpt_every=2):
    """A 3 -> 4 -> 1 MLP trained by Adam on the cosine schedule, with the harness's checkpoints, resume policy,
    log and time budget; dropout draws from torch's global RNG, so its state must survive a resume too."""
    logs = [] if logs is None else logs
    run.mkdir(exist_ok=True)
    ck = run / "checkpoint.safetensors"
    found = H.resume_from(run, [ck] if ck.exists() else [], resume,
                          lambda p: H.load_checkpoint(p, KIND, ("model", "opt", "step", "rng")), logs.append)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.05, betas=(0.9, 0.99))
    step = 0
    if found is not None:
        state = found[1]
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        step = state["step"]
    budget = H.TimeBudget(budget, clock) if clock is not None else H.TimeBudget(budget)
    with H.CsvLog(run / "log.csv", step, ("step", "loss", "lr")) as log:
        while step < steps:
            H.set_lr(opt, H.cosine_with_warmup(step, steps, 0.05, warmup=2))
            x, y = _data(step)
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            log.write({"step": step, "loss": f"{float(loss.detach()):.6f}", "lr": opt.param_groups[0]["lr"]})
            stop = budget.spent()
            if step % ckpt_every == 0 or step == steps or stop:
                H.save_checkpoint(ck, {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                                       "rng": torch.get_rng_state()}, KIND)
            if stop:
                break
    return model, step


class _Clock:
    """One second per call after the budget's start: the budget is spent after a known number of steps."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 1.0
        return self.t


def test_time_budget_stops_and_checkpoints_and_resume_equals_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    full, n = _train(tmp_path / "full", 7)
    assert n == 7
    # the budget's clock reads 1 s at its start, then 2, 3, ... at each step's check: more than 2.5 s after step 3
    part, n = _train(tmp_path / "part", 7, budget=2.5, clock=_Clock())
    assert n == 3 and not all(torch.equal(a, b) for a, b in zip(part.state_dict().values(),
                                                                 full.state_dict().values()))
    state = H.load_checkpoint(tmp_path / "part" / "checkpoint.safetensors", KIND)
    assert state["step"] == 3   # checkpointed at the stop, between the every-2-steps checkpoints
    with open(tmp_path / "part" / "log.csv", "a") as f:   # a row a killed run logged past its checkpoint
        f.write("4,9.9,0.1\n")
    with pytest.raises(InputError, match="--resume"):   # continued only when asked
        _train(tmp_path / "part", 7)
    logs = []
    resumed, n = _train(tmp_path / "part", 7, resume=True, logs=logs)
    assert n == 7 and not logs
    # tolerance: the same float operations in the same order on the same thread: equal to the last bit
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert H.read_log(tmp_path / "part" / "log.csv") == H.read_log(tmp_path / "full" / "log.csv")


def test_resume_with_nothing_there_starts_at_step_0_and_says_so(tmp_path):
    logs = []
    _, n = _train(tmp_path / "run", 2, resume=True, logs=logs)
    assert n == 2 and logs == [f"nothing to resume in {tmp_path / 'run'}: starting at step 0"]


def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path):
    run = tmp_path / "run"
    _train(run, 2)
    ck = run / "checkpoint.safetensors"
    data = ck.read_bytes()
    for damaged in (data[: len(data) // 2], data[:5], b"", b"\x00" * 64):
        ck.write_bytes(damaged)
        with pytest.raises(CheckpointError, match="checkpoint.safetensors") as e:
            _train(run, 4, resume=True)
        assert "delete" in str(e.value) and "step 0" in str(e.value)   # says how to start again, never silently
    ck.write_bytes(data)
    assert _train(run, 4, resume=True)[1] == 4


def test_the_newest_damaged_checkpoint_falls_back_to_the_previous_kept_one_loudly(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    H.save_checkpoint(a, {"step": 1}, KIND)
    H.save_checkpoint(b, {"step": 2}, KIND)
    b.write_bytes(b.read_bytes()[:-3])
    logs = []
    got = H.resume_from(tmp_path, [a, b], True, lambda p: H.load_checkpoint(p, KIND), logs.append)
    assert got == (a, {"step": 1})
    assert str(b) in logs[0] and "unreadable" in logs[0]
    assert logs[1] == "warning: resuming from the previous kept checkpoint, a.safetensors (step 1)"


def test_a_checkpoint_of_another_trainer_or_without_its_entries_is_refused(tmp_path):
    p = tmp_path / "c.safetensors"
    H.save_checkpoint(p, {"step": 1}, "other-trainer")
    with pytest.raises(CheckpointError, match=r"c\.safetensors: a checkpoint of 'other-trainer', not of 'test-tiny'"):
        H.load_checkpoint(p, KIND)
    H.save_checkpoint(p, {"step": 1}, KIND)
    with pytest.raises(CheckpointError, match=r"c\.safetensors: incomplete \(no model\)"):
        H.load_checkpoint(p, KIND, ("step", "model"))
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(p), metadata={"format": "pdfgc"})   # a model file, not a state
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        H.load_checkpoint(p, KIND)


def test_resumed_settings_keep_the_runs_own():
    merged, ignored = H.resumed_settings({"lr": 0.1, "steps": 10, "seed": 0}, {"lr": 0.2, "steps": 20, "seed": 0},
                                         may_change=("steps",))
    assert merged == {"lr": 0.1, "steps": 20, "seed": 0}
    assert ignored == ["lr (given 0.2, run 0.1)"]


def test_state_round_trip_keeps_types():
    opt_like = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.arange(4.0)}},
                "param_groups": [{"lr": 1e-3, "betas": (0.0, 0.99), "params": [0], "amsgrad": False,
                                  "foreach": None}],
                "py": (3, [1, 2], {"inf": math.inf}), "np": np.arange(3, dtype=np.uint32), "s": "x",
                "np_scalar": np.float64(0.5)}
    tensors, skeleton = H.pack_state(opt_like)
    import json
    back = H.unpack_state(json.loads(json.dumps(skeleton)), tensors)
    assert list(back["state"]) == [0] and back["param_groups"][0]["betas"] == (0.0, 0.99)
    assert torch.equal(back["state"][0]["exp_avg"], torch.arange(4.0)) and back["py"] == (3, [1, 2], {"inf": math.inf})
    assert back["np"].dtype == np.uint32 and back["np"].tolist() == [0, 1, 2] and back["np_scalar"] == 0.5
    with pytest.raises(TypeError, match="object"):
        H.pack_state({"bad": object()})


def test_schedule_values_at_known_steps():
    f = H.cosine_with_warmup
    assert f(0, 1000, 1.0, warmup=100) == pytest.approx(0.01)        # warm-up: (step + 1) / warmup
    assert f(49, 1000, 1.0, warmup=100) == pytest.approx(0.5)
    assert f(100, 1000, 1.0, warmup=100) == pytest.approx(1.0)       # the cosine starts at the base rate
    assert f(550, 1000, 1.0, warmup=100) == pytest.approx(0.525)     # half way: floor + (1 - floor) / 2
    assert f(1000, 1000, 1.0, warmup=100) == pytest.approx(0.05)     # the floor, and there it stays
    assert f(5000, 1000, 2.0, warmup=100) == pytest.approx(0.1)
    from pdfgc.families.meshwarp.refine_train import lr_at
    assert [lr_at(s, 8000, 2e-3) for s in (0, 99, 4050, 8000)] == pytest.approx([2e-5, 2e-3, 1.05e-3, 1e-4])


def test_time_budget():
    clock = _Clock()
    b = H.TimeBudget(2.5, clock)
    assert [b.spent() for _ in range(3)] == [False, False, True]   # 1 s, 2 s, 3 s after the start
    assert not H.TimeBudget(None).spent()
    assert H.TimeBudget(0, _Clock()).spent()   # 0 s: spent as soon as any time has passed (one step)
    with pytest.raises(InputError):
        H.TimeBudget(-1)


def test_csv_log_drops_rows_past_the_resumed_step_and_takes_columns_from_the_first_row(tmp_path):
    p = tmp_path / "log.csv"
    with H.CsvLog(p, 0) as log:
        for s in (1, 2, 3):
            log.write({"step": s, "loss": s / 10})
    with H.CsvLog(p, 2, ("step", "loss")) as log:
        log.write({"step": 3, "loss": 0.33, "extra": "ignored"})
    assert H.read_log(p) == [{"step": "1", "loss": "0.1"}, {"step": "2", "loss": "0.2"},
                             {"step": "3", "loss": "0.33"}]


# ---------------------------------------------------------------------------------------------- tensorfile

def test_tensorfile_reads_tensors_metadata_and_lazily(tmp_path):
    from safetensors.torch import save_file
    p = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(1)}, str(p), metadata={"format": "mine"})
    t, meta = read_tensors(p, "test file", expect_format="mine")
    assert meta == {"format": "mine"} and torch.equal(t["a"], torch.arange(6.0).reshape(2, 3))
    assert read_metadata(p) == {"format": "mine"}
    with open_tensors(p, framework="numpy") as f:
        assert f.keys() == ["a", "b"] and f.shape("a") == (2, 3) and f.get_tensor("b").tolist() == [1.0]
    with pytest.raises(CheckpointError, match=r"w\.safetensors: not a test file \(format 'mine', expected 'other'\)"):
        read_tensors(p, "test file", expect_format="other")


def test_tensorfile_errors_name_the_file_and_the_problem(tmp_path):
    from safetensors.torch import save_file
    with pytest.raises(CheckpointError, match=r"missing\.safetensors: test file not found"):
        read_tensors(tmp_path / "missing.safetensors", "test file")
    with pytest.raises(CheckpointError, match="is a folder, not a test file"):
        read_tensors(tmp_path, "test file")
    pth = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(2)}, pth)
    with pytest.raises(CheckpointError, match="model.pth looks like a PyTorch checkpoint.*--official-checkpoints"):
        read_tensors(pth)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match=r"junk\.safetensors: cannot read .*not a safetensors file") as e:
        read_tensors(junk)
    assert "PyTorch" not in str(e.value)
    p = tmp_path / "cut.safetensors"
    save_file({"a": torch.zeros(1000)}, str(p))
    p.write_bytes(p.read_bytes()[:-100])   # the header intact, the data cut short
    with pytest.raises(CheckpointError, match=r"cut\.safetensors"):
        read_tensors(p)
