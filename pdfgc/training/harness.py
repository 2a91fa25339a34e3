"""The training harness every trainer uses (the PD-FGC stages, the mesh-warp refiner, the mesh-warp fit's resume):
one checkpoint format, one resume policy, one CSV log, the learning-rate schedules and a wall-clock time budget.

**Checkpoint format.** One safetensors file: every tensor of the state (model and optimiser states, RNG states,
memory banks) under a path-like key, and the rest of the state (steps, settings, Python numbers, lists, tuples,
dicts with int keys as an optimiser's are) as JSON in the metadata entry `state`, with markers where the tensors
were. `format` is `pdfgc-train-state`, `kind` names the trainer ("pdfgc-stage", "meshwarp-refiner"), so a file
of another trainer is refused by name. Written atomically (`fileio.atomic_path`): a run killed at any moment, kill
-9 included, leaves the previous checkpoint intact. Read with `tensorfile` (no unpickling, one `CheckpointError`
naming the file).

**Resume policy** (`resume_from`). A run folder that holds checkpoints is continued only when asked (`--resume`);
without it, one error says so. Asked, the newest kept checkpoint that reads back whole is used: a damaged newer one
(a disk error, a copy cut short) is named in a warning and the previous kept one is used (that is why it is kept);
when none reads, one `CheckpointError` names them and says how to start again. Never a silent restart. Asked with
no checkpoint there, the run starts at step 0 and says so (the same command starts and continues a run). A resumed
run keeps its own settings (`resumed_settings`): only its length and logging cadence may change; any other setting
given differently is named in a log line, not applied.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, InputError
from ..fileio import atomic_path
from ..tensorfile import read_tensors

FORMAT = "pdfgc-train-state"
VERSION = 1
_TENSOR, _ARRAY, _TUPLE, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__items__"


# ---------------------------------------------------------------------------------------------- state <-> file

def pack_state(state: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """(tensors by key, a JSON-able skeleton) of a nested state: dicts, lists, tuples, tensors, numpy arrays, str,
    int, float, bool and None. Dicts whose keys are not all strings (an optimiser's `state`) keep their keys' types."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(x, key: str):
        if isinstance(x, torch.Tensor):
            tensors[key] = x.detach().cpu().contiguous().clone()  # clone: safetensors refuses shared storage
            return {_TENSOR: key}
        if isinstance(x, np.ndarray):
            tensors[key] = torch.from_numpy(np.ascontiguousarray(x).copy())
            return {_ARRAY: key}
        if isinstance(x, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in x):
                return {k: walk(v, f"{key}.{k}") for k, v in x.items()}
            return {_ITEMS: [[k, walk(v, f"{key}.{k}")] for k, v in x.items()]}
        if isinstance(x, tuple):
            return {_TUPLE: [walk(v, f"{key}.{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(x)]
        if isinstance(x, (np.integer, np.floating, np.bool_)):
            return x.item()
        if x is None or isinstance(x, (str, int, float, bool)):
            return x
        raise TypeError(f"training state at '{key}': {type(x).__name__} is not a tensor, array or plain value")

    skeleton = walk(state, "s")
    return tensors, skeleton


def unpack_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The nested state `pack_state` took apart; KeyError naming a tensor the file lacks."""
    def walk(x):
        if isinstance(x, dict):
            if _TENSOR in x:
                return tensors[x[_TENSOR]]
            if _ARRAY in x:
                return tensors[x[_ARRAY]].numpy()
            if _TUPLE in x:
                return tuple(walk(v) for v in x[_TUPLE])
            if _ITEMS in x:
                return {k if not isinstance(k, list) else tuple(k): walk(v) for k, v in x[_ITEMS]}
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x
    return walk(skeleton)


def save_checkpoint(path: str | os.PathLike, state: dict, kind: str) -> Path:
    """Write `state` (see `pack_state`) to one safetensors file, atomically; `kind` names the trainer."""
    from safetensors.torch import save_file

    tensors, skeleton = pack_state(state)
    meta = {"format": FORMAT, "version": str(VERSION), "kind": kind, "state": json.dumps(skeleton)}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_checkpoint(path: str | os.PathLike, kind: str, required: Sequence[str] = ()) -> dict:
    """The state `save_checkpoint` wrote, or one CheckpointError naming the file: missing, damaged, not a
    training state, another trainer's (`kind`), a newer version, or without one of the `required` entries."""
    path = Path(path)
    tensors, meta = read_tensors(path, "training checkpoint", expect_format=FORMAT)
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path}: a checkpoint of '{meta.get('kind')}', not of '{kind}'")
    try:
        version = int(meta.get("version", "0"))
        skeleton = json.loads(meta["state"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged training state ({type(e).__name__}: {e})") from None
    if version > VERSION:
        raise CheckpointError(f"{path}: training state version {version}, this pdfgc reads up to {VERSION}")
    try:
        state = unpack_state(skeleton, tensors)
    except KeyError as e:
        raise CheckpointError(f"{path}: damaged training state (tensor {e} missing)") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a training state")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete (no {missing[0]})")
    return state


# ---------------------------------------------------------------------------------------------- resume policy

def resume_from(run_dir: str | os.PathLike, candidates: Sequence[Path], resume: bool, read: Callable[[Path], Any],
                log: Callable[[str], None], remove_hint: str | None = None):
    """The checkpoint a run continues from, by the module's policy: (path, what `read` returned) or None (start
    at step 0). `candidates`: the run's kept checkpoints, oldest first; `read(path)` reads one back whole or raises
    CheckpointError; `remove_hint`: what to delete to start again (default: the newest candidate)."""
    run_dir = Path(run_dir)
    if not candidates:
        if resume:
            log(f"nothing to resume in {run_dir}: starting at step 0")
        return None
    if not resume:
        raise InputError(f"{run_dir} already holds checkpoints: pass --resume to continue, or choose another --out")
    bad = []
    for ck in reversed(list(candidates)):
        try:
            got = read(ck)
        except CheckpointError as e:
            bad.append(str(e))
            continue
        if bad:
            for b in bad:
                log(f"warning: checkpoint unreadable, skipped: {b}")
            step = got.get("step") if isinstance(got, dict) else None
            log(f"warning: resuming from the previous kept checkpoint, {ck.name}"
                + (f" (step {step})" if step is not None else ""))
        return ck, got
    hint = remove_hint or str(candidates[-1])
    raise CheckpointError(f"{run_dir}: no readable checkpoint to resume ({'; '.join(bad)}); to start this run again "
                          f"from step 0, delete {hint}, or choose another --out")


def resumed_settings(saved: dict, given: dict, may_change: Sequence[str], ignore: Sequence[str] = ()):
    """A resumed run's settings: the checkpoint's, with only `may_change` taken from `given` (length, cadence,
    paths). Returns (settings, the names of given settings that differ and are not applied, as 'name (given X,
    run Y)'); `ignore`: settings not worth a word (a starting point already used)."""
    merged = {**saved, **{k: given[k] for k in may_change if k in given}}
    ignored = [f"{k} (given {given[k]}, run {merged[k]})" for k in given
               if k in merged and k not in may_change and k not in ignore and given[k] != merged[k]]
    return merged, ignored


# ---------------------------------------------------------------------------------------------- log

class CsvLog:
    """`log.csv` of a run: one row per logged step. On resume the rows after the resumed step (logged by a killed
    run past its last checkpoint) are dropped, so the file reads as one uninterrupted run. Columns are fixed when
    the log is opened (`columns`) or at the first row; a row's extra keys are ignored, missing ones left empty."""

    def __init__(self, path: str | os.PathLike, start_step: int, columns: Sequence[str] | None = None):
        self.path, self.start = Path(path), int(start_step)
        self._file = self._writer = None
        if columns is not None:
            self._open(list(columns))

    def _open(self, columns: list[str]) -> None:
        rows = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if _step(r) <= self.start]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=columns, extrasaction="ignore")

    def write(self, row: dict) -> None:
        if self._writer is None:
            self._open(list(row))
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _step(row: dict) -> int:
    try:
        return int(row.get("step") or 0)
    except ValueError:
        return 0


def read_log(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def progress_bar(total: int, start: int, desc: str, enabled: bool = True):
    """A tqdm bar from `start` to `total` steps, or None when not `enabled` (logs only)."""
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------- schedules

def cosine_with_warmup(step: int, total: int, base: float, warmup: int = 100, floor: float = 0.05) -> float:
    """The learning rate at `step` (0-based): linear warm-up over `warmup` steps to `base`, then a half cosine
    from `base` down to `floor * base` at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


# ---------------------------------------------------------------------------------------------- time budget

class TimeBudget:
    """A wall-clock budget for a run, from when it is made: `spent()` once more than `seconds` have passed (None:
    never). The trainer checks it after each step, then checkpoints and stops; the same command with --resume
    goes on."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic):
        if seconds is not None and seconds < 0:
            raise InputError(f"time budget must be at least 0 s, got {seconds}")
        self.seconds, self._clock = seconds, clock
        self.start = clock()

    def restart(self) -> None:
        """Count from now (the set-up before the first step is not the run's time)."""
        self.start = self._clock()

    def elapsed(self) -> float:
        return self._clock() - self.start

    def spent(self) -> bool:
        return self.seconds is not None and self.elapsed() > self.seconds

    def describe(self) -> str:
        s = self.seconds or 0
        return f"{s / 60:g} min" if s >= 60 or s == 0 else f"{s:g} s"
