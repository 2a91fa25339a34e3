"""`pdfgc train`: one stage of PD-FGC's progressive training, on one CPU process or many GPUs (`torchrun`, DDP).

Distributed execution, mixed precision (bf16/fp16 on GPU) and gradient accumulation are `accelerate`'s; nothing
distributed is written here. One training step = `grad_accum` micro-batches per process, then one optimiser update.

Per micro-batch (GAN stages; the order of the authors' PC-AVS-style trainers, which SPADE also uses):
1. `StageNet` forward: the fake image and the non-adversarial losses (see `stages.py`, `losses.py`);
2. generator side: D (parameters frozen, called outside DDP) on [fake; real] gives the hinge G loss and feature
   matching; the optional VGG19 perceptual loss; backward; gradient-norm clip 5 [recovered]; Adam update;
3. discriminator side: D (DDP) on [sg(fake); real], hinge D loss, backward, clip 5, its own Adam update.
Adam betas (0, 0.99), lr 1e-4, weight decay 1e-3, StepLR (80,000 steps, gamma 0.93) [recovered], for both.

State and resume (`pdfgc.training.harness`: its checkpoint format and resume policy): every `checkpoint_every` steps
a checkpoint folder is written under a temporary name and renamed into place (`os.replace`), so a run killed at any
moment (kill -9 included) has an intact last checkpoint; the last `keep_checkpoints` are kept. A checkpoint holds
`model.safetensors` (the `PDFGC.save_pretrained` format), `discriminator.safetensors`, `train_state.safetensors`
(optimiser, scheduler and grad-scaler states, memory banks, step: the harness's format), `rng-rank<r>.safetensors`
per process (python, numpy, torch RNG states; the same format) and `trainer.json` (the TrainConfig). Batches are a
pure function of (seed, step, rank, micro-step) (`data.py`), so `--resume` continues exactly: same batches, same
weights. `minutes` is the run's time budget: past it the run checkpoints and stops (`--resume` goes on).
At the end the stage writes `RUN_DIR/model.safetensors` (loadable by `PDFGC.from_pretrained`; the next stage's
`--init`) and `RUN_DIR/discriminator.safetensors` (picked up by a later stage's `--init` when it sits beside it;
the lips stage, which has no GAN, passes its init's discriminator on).

Logs (main process): `log.csv` (step, stage, each weighted loss, d_loss, diagnostics, lr, sec_per_step, each a mean
over the last `log_every` steps), TensorBoard under `tb/` when the `tensorboard` package is importable, and
`samples/step-XXXXXXXXX.png` grids (rows: portrait | driving input | result | target) every `sample_every` steps.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import sys
import time
import warnings
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ....data.corpus import PreparedCorpus
from ....errors import CheckpointError, InputError
from ....fileio import atomic_path, write_atomic
from ....media.preprocess import to_uint8
from ....tensorfile import read_metadata, read_tensors
from ....training import harness as H
from ....vocabulary import TRAIN_PRECISIONS
from ..configs import architecture_name, get_config
from ..model import PDFGC, load_state_dict_checked
from ..networks.discriminator import MultiscaleDiscriminator
from ..networks.vgg import VGG19Perceptual
from . import losses as L
from .augment import AugmentConfig
from .data import BatchSampler
from .stages import (
    COLLAPSE_SPREAD,
    POSE_CODE_UNITS,
    STAGES,
    USES_GAN,
    StageNet,
    motion_feature_spread,
    set_train_mode,
    set_trainable,
)

PRECISIONS = dict(zip(TRAIN_PRECISIONS, ("no", "bf16", "fp16")))  # ours -> accelerate's mixed_precision
DISC_NDF = {"official": 64, "lite": 32, "tiny": 8}  # [ours] discriminator width by model size (official D: 64)
CHECKPOINTS = "checkpoints"
DISC_FORMAT = "pdfgc-discriminator"
_CKPT = re.compile(r"^step-(\d{9})$")
STATE_FILE, STATE_KIND = "train_state.safetensors", "pdfgc-stage"
RNG_KIND = "pdfgc-rng"
# a resumed run keeps its own settings but these (its length, logging cadence, time budget and paths)
MAY_CHANGE = ("steps", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints", "data", "out",
              "tensorboard", "minutes")


def rng_file(rank: int) -> str:
    return f"rng-rank{rank}.safetensors"


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as JSON in the run folder and in every checkpoint."""

    stage: str = "appearance"
    data: str = ""                     # prepared corpus folder (`pdfgc prepare`)
    out: str = ""                      # run folder
    model: str = "lite"                # named architecture (pdfgc.configs) when starting from scratch
    init: str | None = None            # start from this model file (the previous stage's model.safetensors)
    steps: int = 1000
    batch_size: int = 8                # per process and micro-step
    grad_accum: int = 1
    lr: float = 1e-4                   # [recovered]
    lr_d: float | None = None          # discriminator lr (default: lr)
    betas: tuple[float, float] = (0.0, 0.99)  # [recovered]
    weight_decay: float = 1e-3         # [recovered]
    grad_clip: float = 5.0             # [recovered]
    lr_step: int = 80000               # [recovered] StepLR step
    lr_gamma: float = 0.93             # [recovered]
    precision: str = "fp32"
    vgg19: str | None = None           # torchvision vgg19 state dict: enables the perceptual loss
    seed: int = 0
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    name: str | None = None            # name stored in the model file (default: "<model>-<stage>")
    lip_group: int = 4                 # frames per clip in a lips batch [recovered: groups of N frames]
    lip_temperature: float = 1.0       # [ours]
    eye_temperature: float = 0.1       # [ours]
    emotion_window: int = 5            # K frames averaged [ours value]
    bank_size: int = 4096              # decorrelation memory banks [ours]
    eye_candidates: int = 8            # frames tried per eye pair [ours]
    disc_ndf: int | None = None        # default by architecture (DISC_NDF)
    disc_layers: int = 4               # [recovered]
    disc_scales: int = 2               # [recovered]
    cache_clips: int = 64
    overfit: int = 0                   # > 0: draw batches only from the first N positions (can the stage fit?)
    sync_bn: bool | None = None        # SyncBatchNorm under DDP; None: on for several CUDA processes (use_sync_bn)
    tensorboard: bool = True
    minutes: float | None = None       # time budget: checkpoint and stop after this long (--resume goes on)
    weights: L.LossWeights = field(default_factory=L.LossWeights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["weights"] = L.LossWeights(**d.get("weights", {}))
        d["augment"] = AugmentConfig(**d.get("augment", {}))
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise InputError(f"unknown stage '{self.stage}' (choose from {', '.join(STAGES)})")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision '{self.precision}' (fp32, bf16, fp16)")
        for k in ("steps", "batch_size", "grad_accum", "log_every", "sample_every", "checkpoint_every",
                  "keep_checkpoints", "lip_group", "emotion_window"):
            if int(getattr(self, k)) < 1:
                raise InputError(f"--{k.replace('_', '-')} must be at least 1, got {getattr(self, k)}")
        if self.stage != "lips" and self.batch_size < 2:
            raise InputError("--batch-size must be at least 2 (BatchNorm statistics and in-batch negatives)")
        if self.minutes is not None and not self.minutes >= 0:
            raise InputError(f"--minutes (the time budget) must be at least 0, got {self.minutes}")
        if not self.out:
            raise InputError("no run folder (--out)")
        for p in (Path(self.out), *Path(self.out).parents):  # the nearest existing path must be a folder
            if p.exists():
                if not p.is_dir():
                    raise InputError(f"--out {self.out}: {p} is a file; the run folder must be a folder (a new "
                                     "one, or a run to continue with --resume)")
                break


# ------------------------------------------------------------------------------------------------- files

def save_discriminator(disc: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in disc.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": DISC_FORMAT, "config": json.dumps(disc.config)})


def load_discriminator_weights(disc: torch.nn.Module, path: Path) -> None:
    tensors, _ = read_tensors(path, "pdfgc discriminator file", expect_format=DISC_FORMAT)
    load_state_dict_checked(disc, tensors, str(path))


def discriminator_config_of(path: Path) -> dict | None:
    try:
        return json.loads(read_metadata(path, "pdfgc discriminator file").get("config", "null"))
    except (CheckpointError, ValueError):
        return None


def list_checkpoints(run_dir: Path) -> list[Path]:
    d = Path(run_dir) / CHECKPOINTS
    if not d.is_dir():
        return []
    found = [p for p in d.iterdir() if _CKPT.match(p.name) and (p / "trainer.json").is_file()]
    return sorted(found, key=lambda p: int(_CKPT.match(p.name).group(1)))


def _read_checkpoint(ck: Path, rank: int) -> dict:
    """Read back every file of checkpoint `ck` that a resume needs: {"step", "config" (the saved TrainConfig
    dict), "state" (the train state)}; CheckpointError naming the first file that does not read."""
    try:
        saved = json.loads((ck / "trainer.json").read_text())["config"]
        if not isinstance(saved, dict):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"{ck / 'trainer.json'}: empty or not a trainer record") from None
    state = H.load_checkpoint(ck / STATE_FILE, STATE_KIND, required=("step", "stage", "optimizer", "scheduler"))
    for name in ("model.safetensors", "discriminator.safetensors"):
        if name == "model.safetensors" or "optimizer_d" in state:
            read_metadata(ck / name, name)  # the header, checked against the file's size
    rng = ck / rng_file(rank)
    if rng.exists():
        H.load_checkpoint(rng, RNG_KIND)
    return {"step": int(state["step"]), "config": saved, "state": state}


def latest_checkpoint(run_dir: Path) -> Path | None:
    c = list_checkpoints(run_dir)
    return c[-1] if c else None


def _rng_state() -> dict:
    np_state = np.random.get_state()
    st = {"python": torch.tensor(random.getstate()[1], dtype=torch.int64),
          "python_version": random.getstate()[0],
          "python_gauss": -1.0 if random.getstate()[2] is None else float(random.getstate()[2]),
          "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
          "numpy_has_gauss": int(np_state[3]), "numpy_gauss": float(np_state[4]),
          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    gauss = None if st["python_gauss"] == -1.0 else st["python_gauss"]
    random.setstate((int(st["python_version"]), tuple(int(x) for x in st["python"].tolist()), gauss))
    np.random.set_state(("MT19937", st["numpy_keys"].numpy().astype(np.uint32), int(st["numpy_pos"]),
                         int(st["numpy_has_gauss"]), float(st["numpy_gauss"])))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available() and len(st["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(st["cuda"])


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _split_outputs(outs: list[list[torch.Tensor]], n: int) -> tuple[list, list]:
    a = [[f[:n] for f in scale] for scale in outs]
    b = [[f[n:] for f in scale] for scale in outs]
    return a, b


def sample_grid(out: dict, rows: int = 4) -> np.ndarray:
    """uint8 RGB grid: per row portrait | driving input | result | target."""
    cols = [out["source"], out["driving"], out["fake"], out["real"]]
    n = min(rows, out["fake"].shape[0])
    size = out["fake"].shape[-1]
    imgs = []
    for c in cols:
        c = c[:n].detach().float().cpu()
        if c.shape[-1] != size:
            c = torch.nn.functional.interpolate(c, size=(size, size), mode="area")
        imgs.append(to_uint8(c))
    return np.concatenate([np.concatenate(list(im), 0) for im in imgs], 1)


# ------------------------------------------------------------------------------------------------- trainer

class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True, log=None):
        cfg.validate()
        self.cfg, self.resume, self.progress = cfg, resume, progress
        self.log = log or (lambda m: print(f"pdfgc: {m}", file=sys.stderr))
        self.run_dir = Path(cfg.out)
        self._last_batch_digest = ""
        self.stopped_early = False  # set when the time budget ended the run before its last step

    # ---- building
    def _accelerator(self):
        try:
            from accelerate import Accelerator
        except ImportError:
            raise InputError("training needs the `accelerate` package: pip install 'pdfgc[train]'") from None
        from accelerate.state import AcceleratorState, GradientState

        cuda = torch.cuda.is_available()
        if self.cfg.precision == "fp16" and not cuda:
            raise InputError("--precision fp16 needs a GPU (use bf16 or fp32 on a CPU)")
        # accelerate keeps process-wide singletons; several runs in one process (`--stage all`, tests) start each
        # from a clean state (the process group itself, in PartialState, is kept)
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
        return Accelerator(mixed_precision=PRECISIONS[self.cfg.precision],
                           gradient_accumulation_steps=self.cfg.grad_accum, cpu=not cuda,
                           step_scheduler_with_optimizer=False)

    def _build_model(self, ckpt: Path | None):
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts them)
        if ckpt is not None:
            model = PDFGC.from_pretrained(ckpt / "model.safetensors")
        elif cfg.init:
            model = PDFGC.from_pretrained(cfg.init)
        else:
            model = PDFGC(get_config(cfg.model))
        mc = model.config
        arch = architecture_name(mc)
        mc.trained = True
        mc.name = cfg.name or f"pdfgc-{arch}-trained-{cfg.stage}"
        if cfg.stage in ("pose_eye", "emotion"):
            mc.pose_code_units = POSE_CODE_UNITS
        return model, arch

    def _build_disc(self, arch: str, ckpt: Path | None):
        cfg = self.cfg
        ndf = cfg.disc_ndf or DISC_NDF.get(arch, 64)
        torch.manual_seed(cfg.seed + 1)
        disc = MultiscaleDiscriminator(3, ndf, cfg.disc_layers, cfg.disc_scales)
        if ckpt is not None:
            load_discriminator_weights(disc, ckpt / "discriminator.safetensors")
        elif cfg.init:
            side = Path(cfg.init)
            side = (side if side.is_dir() else side.parent) / "discriminator.safetensors"
            if side.is_file() and discriminator_config_of(side) == disc.config:
                load_discriminator_weights(disc, side)
                self.log(f"discriminator initialised from {side}")
        return disc

    # ---- checkpoints
    def _save_checkpoint(self, acc, step: int, net, disc, opt, opt_d, sched, sched_d, banks) -> None:
        ck_root = self.run_dir / CHECKPOINTS
        final = ck_root / f"step-{step:09d}"
        tmp = ck_root / f".tmp-step-{step:09d}"
        acc.wait_for_everyone()
        if acc.is_main_process:
            ck_root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        acc.wait_for_everyone()
        rank_state = _rng_state()
        # consistency record of this rank: its weights (identical on every rank under DDP) and its last batch
        rank_state["weights_digest"] = _digest(acc.unwrap_model(net).model.parameters())
        rank_state["batch_digest"] = self._last_batch_digest
        H.save_checkpoint(tmp / rng_file(acc.process_index), rank_state, RNG_KIND)
        acc.wait_for_everyone()
        if acc.is_main_process:
            model = acc.unwrap_model(net).model
            model.save_pretrained(tmp / "model.safetensors")
            if disc is not None:
                save_discriminator(acc.unwrap_model(disc), tmp / "discriminator.safetensors")
            state = {"step": step, "stage": self.cfg.stage, "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict(), "banks": {k: b.state_dict() for k, b in banks.items()}}
            if opt_d is not None:
                state["optimizer_d"] = opt_d.state_dict()
                state["scheduler_d"] = sched_d.state_dict()
            if acc.scaler is not None:
                state["scaler"] = acc.scaler.state_dict()
            H.save_checkpoint(tmp / STATE_FILE, state, STATE_KIND)
            write_atomic(tmp / "trainer.json", json.dumps({"step": step, "config": json.loads(
                self.cfg.to_json())}, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in list_checkpoints(self.run_dir)[:-self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def _load_state(self, acc, ckpt: Path, opt, opt_d, sched, sched_d, banks) -> int:
        state = self._ckpt_state or H.load_checkpoint(ckpt / STATE_FILE, STATE_KIND)
        self._ckpt_state = None
        if state["stage"] != self.cfg.stage:
            raise CheckpointError(f"{ckpt}: checkpoint of stage '{state['stage']}', this run is '{self.cfg.stage}'")
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if opt_d is not None:
            opt_d.load_state_dict(state["optimizer_d"])
            sched_d.load_state_dict(state["scheduler_d"])
        if acc.scaler is not None and "scaler" in state:
            acc.scaler.load_state_dict(state["scaler"])
        for k, b in banks.items():
            b.load_state_dict(state["banks"][k])
        rng = ckpt / rng_file(acc.process_index)
        if rng.is_file():
            _set_rng_state(H.load_checkpoint(rng, RNG_KIND))
        return int(state["step"])

    # ---- logs
    def _tensorboard(self, start: int):
        if not self.cfg.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed: CSV only
            return None
        # purge_step: on resume, TensorBoard hides what a killed run logged after its last checkpoint
        return SummaryWriter(str(self.run_dir / "tb"), purge_step=start + 1 if start else None)

    # ---- the run
    def run(self) -> Path:
        cfg = self.cfg
        acc = self._accelerator()
        rank, world = acc.process_index, acc.num_processes
        self.run_dir.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        final_model = self.run_dir / "model.safetensors"
        self._ckpt_state = None
        found = H.resume_from(self.run_dir, list_checkpoints(self.run_dir), self.resume,
                              lambda ck: _read_checkpoint(ck, rank),
                              self.log if acc.is_main_process else (lambda m: None),
                              remove_hint=str(self.run_dir / CHECKPOINTS))
        ckpt = None
        if found is not None:
            ckpt, got = found
            saved, self._ckpt_state = got["config"], got["state"]
            writers = len(list(ckpt.glob("rng-rank*.safetensors")))
            if writers and writers != world and acc.is_main_process:
                self.log(f"warning: {ckpt.name} was written by {writers} process(es), this run has {world}: "
                         f"training continues, but the batch per step changes ({writers} x {saved.get('batch_size')} "
                         f"-> {world} x {saved.get('batch_size')}) and the run no longer matches an uninterrupted one")
            if saved.get("stage") != cfg.stage:
                raise InputError(f"{self.run_dir}: its checkpoints are stage '{saved.get('stage')}', not "
                                 f"'{cfg.stage}'")
            # the saved config decides the maths; only the length and the logging cadence may change
            given = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
            merged, _ = H.resumed_settings(saved, given, MAY_CHANGE)
            resumed = TrainConfig.from_dict(merged)
            ignored = [f"{f.name} (given {getattr(cfg, f.name)}, run {getattr(resumed, f.name)})"
                       for f in dataclasses.fields(TrainConfig)
                       if f.name not in MAY_CHANGE and f.name != "init"
                       and getattr(cfg, f.name) != getattr(resumed, f.name)]
            cfg = self.cfg = resumed
            if acc.is_main_process:
                self.log(f"resuming {self.run_dir} from {ckpt.name}")
                if ignored:
                    self.log("a resumed run keeps its own settings; ignored: " + ", ".join(ignored))
        if ckpt is None and not cfg.init and cfg.stage != STAGES[0] and acc.is_main_process:
            self.log(f"warning: stage {cfg.stage} starts from random weights (no --init): the stages are trained "
                     f"in order, each from the previous one's model (--init RUN/model.safetensors of stage "
                     f"{STAGES[STAGES.index(cfg.stage) - 1]})")
        if acc.is_main_process:
            write_atomic(self.run_dir / "train.json", cfg.to_json())

        if acc.is_main_process:
            self.log(f"stage {cfg.stage}: {world} process(es) on {acc.device}"
                     + (f" ({acc.state.backend})" if world > 1 else "") + f", precision {cfg.precision}")
        corpus = PreparedCorpus(cfg.data, split="train")
        model, arch = self._build_model(ckpt)
        if use_sync_bn(cfg.sync_bn, world, acc.device.type):
            n = to_sync_batchnorm(model)
            if acc.is_main_process:
                self.log(f"SyncBatchNorm: {n} BatchNorm layers share their statistics across {world} processes")
        elif world > 1 and acc.is_main_process:
            self.log("BatchNorm statistics per process (SyncBatchNorm off"
                     + (": it runs on CUDA only)" if acc.device.type != "cuda" else ")"))
        gan = USES_GAN[cfg.stage]
        disc = self._build_disc(arch, ckpt) if gan else None
        params = set_trainable(model, cfg.stage)
        net = StageNet(model, cfg.stage, cfg.weights, cfg.lip_temperature, cfg.eye_temperature)
        adam = dict(betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        opt = torch.optim.Adam(params, lr=cfg.lr, **adam)
        sched = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step, cfg.lr_gamma)
        opt_d = sched_d = None
        if gan:
            opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d or cfg.lr, **adam)
            sched_d = torch.optim.lr_scheduler.StepLR(opt_d, cfg.lr_step, cfg.lr_gamma)
            net, disc, opt, opt_d = acc.prepare(net, disc, opt, opt_d)
        else:
            net, opt = acc.prepare(net, opt)
        raw_model = acc.unwrap_model(net).model
        raw_disc = acc.unwrap_model(disc) if gan else None
        vgg = None
        if cfg.vgg19 and gan:
            vgg = VGG19Perceptual.from_file(cfg.vgg19).to(acc.device)
        lay = raw_model.layout
        banks = {}
        if cfg.stage == "emotion":
            banks = {k: L.MemoryBank(getattr(lay, k), cfg.bank_size) for k in ("emotion", "mouth", "pose", "eye")}
        start = 0
        if ckpt is not None:
            start = self._load_state(acc, ckpt, opt, opt_d, sched, sched_d, banks)
        if start >= cfg.steps:
            if acc.is_main_process:
                self.log(f"{self.run_dir}: already at step {start} (>= --steps {cfg.steps})")
                self._write_final(acc, net, disc, start)
            acc.wait_for_everyone()
            return final_model

        sampler = BatchSampler(corpus, cfg.stage, cfg.seed, cfg.batch_size, raw_model.network_input,
                               official_crop=raw_model.config.official_crop, lip_group=cfg.lip_group,
                               emotion_window=cfg.emotion_window, eye_candidates=cfg.eye_candidates,
                               augment=cfg.augment, cache_clips=cfg.cache_clips)
        set_train_mode(raw_model, cfg.stage)
        # DDP notes that oneDNN returns some 1x1-conv gradients channels-last: a speed remark, not an error
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        g_params = [p for p in raw_model.parameters() if p.requires_grad]

        csv_log = tb = bar = None
        if acc.is_main_process:
            (self.run_dir / "samples").mkdir(exist_ok=True)
            tb = self._tensorboard(start)
            csv_log = H.CsvLog(self.run_dir / "log.csv", start)  # columns: the first row's
            bar = H.progress_bar(cfg.steps, start, f"train {cfg.stage}", self.progress)
        # the next micro-batch is drawn in a background thread while this one trains (decoding and augmentation
        # release the GIL); batches are a pure function of their position, so this changes nothing but speed
        positions = ((step % cfg.overfit if cfg.overfit else step, micro)
                     for step in range(start, cfg.steps) for micro in range(cfg.grad_accum))
        pool = ThreadPoolExecutor(1, thread_name_prefix="pdfgc-batches")
        pending: deque = deque()

        def _submit():
            while len(pending) < 2:
                nxt = next(positions, None)
                if nxt is None:
                    return
                pending.append(pool.submit(sampler.batch, nxt[0], rank, nxt[1]))

        window = defaultdict(float)
        window_steps, t_window = 0, time.perf_counter()
        budget = H.TimeBudget(60 * cfg.minutes if cfg.minutes is not None else None)
        stopped_at = None
        try:
            for step in range(start, cfg.steps):
                vals = defaultdict(float)
                last_out = None
                for micro in range(cfg.grad_accum):
                    _submit()
                    batch = pending.popleft().result()
                    self._last_batch_digest = _digest(batch[k] for k in sorted(batch))
                    if banks:
                        for k, b in banks.items():
                            batch[f"bank_{k}"] = b.contents()
                    batch = _to_device(batch, acc.device)
                    out, g_losses, g_total, d_loss = self._train_step(acc, net, disc, raw_disc, opt, opt_d, g_params,
                                                                      vgg, batch)
                    if d_loss is not None:
                        vals["d_loss"] += float(d_loss.detach()) / cfg.grad_accum
                    for k, v in g_losses.items():
                        vals[k] += float(v.detach()) / cfg.grad_accum
                    vals["total"] += float(g_total.detach()) / cfg.grad_accum
                    for k, v in out.get("metrics", {}).items():
                        vals[k] += float(v) / cfg.grad_accum
                    if banks:
                        pushed = acc.gather({k: v.float().contiguous() for k, v in out["bank_push"].items()})
                        for k, b in banks.items():
                            b.push(pushed[k])
                    last_out = out
                sched.step()
                if sched_d is not None:
                    sched_d.step()
                done = step + 1
                for k, v in vals.items():
                    window[k] += v
                window_steps += 1
                if done % cfg.log_every == 0 or done == cfg.steps:
                    keys = sorted(window)
                    t = torch.tensor([window[k] / window_steps for k in keys], device=acc.device)
                    t = acc.reduce(t, reduction="mean")  # mean over ranks
                    if acc.is_main_process:
                        row = {"step": done, "stage": cfg.stage, **dict(zip(keys, (float(x) for x in t.cpu()))),
                               "lr": sched.get_last_lr()[0],
                               "sec_per_step": (time.perf_counter() - t_window) / window_steps}
                        csv_log.write(row)
                        if tb is not None:
                            for k in keys + ["lr", "sec_per_step"]:
                                tb.add_scalar(f"{cfg.stage}/{k}", row[k], done)
                        if bar is not None:
                            bar.set_postfix(total=f"{row['total']:.3g}")
                    window.clear()
                    window_steps, t_window = 0, time.perf_counter()
                if acc.is_main_process and (done % cfg.sample_every == 0 or done == cfg.steps):
                    self._write_sample(last_out, done, tb)
                    self._check_motion_feature(acc.unwrap_model(net).model, last_out, done, tb)
                if bar is not None:
                    bar.update(1)
                stop = cfg.minutes is not None and self._all_agree_spent(acc, budget)
                if done % cfg.checkpoint_every == 0 or done == cfg.steps or stop:
                    self._save_checkpoint(acc, done, net, disc, opt, opt_d, sched, sched_d, banks)
                if stop and done < cfg.steps:
                    stopped_at = done
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if bar is not None:
                bar.close()
            if csv_log is not None:
                csv_log.close()
            if tb is not None:
                tb.close()
        if stopped_at is not None:  # the time budget: checkpointed, no final model yet
            ck = self.run_dir / CHECKPOINTS / f"step-{stopped_at:09d}"
            if acc.is_main_process:
                self.log(f"stopped after {budget.describe()} at step {stopped_at} of {cfg.steps} (checkpointed in "
                         f"{ck}; the same command with --resume goes on)")
            self.stopped_early = True
            acc.wait_for_everyone()
            return ck / "model.safetensors"
        if acc.is_main_process:
            self._write_final(acc, net, disc, cfg.steps)
        acc.wait_for_everyone()
        return final_model

    @staticmethod
    def _all_agree_spent(acc, budget: H.TimeBudget) -> bool:
        """Whether the time budget is spent, the same answer on every process (any one's clock past it)."""
        flag = torch.tensor([1.0 if budget.spent() else 0.0], device=acc.device)
        return float(acc.reduce(flag, reduction="sum")) > 0

    def _train_step(self, acc, net, disc, raw_disc, opt, opt_d, g_params, vgg, batch: dict):
        """One micro-batch: the stage's losses and the generator's step, then (GAN stages, `disc` given) the
        discriminator's hinge step on the same fake and real frames. Returns (the stage network's outputs, the
        generator's weighted losses, their total, the discriminator's loss or None)."""
        cfg = self.cfg
        gan = disc is not None
        d_loss = None
        with acc.accumulate(*([net, disc] if gan else [net])):
            out = net(batch)
            g_losses = dict(out["losses"])
            fake, real = out["fake"], out["real"]
            if gan:
                raw_disc.requires_grad_(False)
                with acc.autocast():
                    d_out = raw_disc(torch.cat([fake, real.to(fake.dtype)]))
                d_fake, d_real = _split_outputs(d_out, fake.shape[0])
                g_losses["gan"] = cfg.weights.gan * L.hinge_g_loss(d_fake)
                g_losses["feature_matching"] = cfg.weights.feature_matching * L.feature_matching_loss(d_fake, d_real)
                if vgg is not None:
                    g_losses["vgg"] = cfg.weights.vgg * vgg(fake.float(), real.float())
            g_total = sum(g_losses.values())
            acc.backward(g_total)
            if acc.sync_gradients and cfg.grad_clip:
                acc.clip_grad_norm_(g_params, cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if gan:
                raw_disc.requires_grad_(True)
                d_out = disc(torch.cat([fake.detach(), real.to(fake.dtype)]))
                d_fake, d_real = _split_outputs(d_out, fake.shape[0])
                d_loss = cfg.weights.gan * L.hinge_d_loss(d_real, d_fake)
                acc.backward(d_loss)
                if acc.sync_gradients and cfg.grad_clip:
                    acc.clip_grad_norm_(disc.parameters(), cfg.grad_clip)
                opt_d.step()
                opt_d.zero_grad(set_to_none=True)
        return out, g_losses, g_total, d_loss

    def _write_sample(self, out: dict, step: int, tb) -> None:
        grid = sample_grid(out)
        path = self.run_dir / "samples" / f"step-{step:09d}.png"
        with atomic_path(path) as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        if tb is not None:
            tb.add_image(f"{self.cfg.stage}/samples", grid, step, dataformats="HWC")

    def _check_motion_feature(self, model, out: dict, step: int, tb) -> None:
        """Health check at sample steps: warn when the motion encoder has collapsed at inference (eval mode)."""
        frames = out.get("driving")
        if frames is None or frames.shape[0] < 2:
            return
        spread = motion_feature_spread(model, frames)
        if tb is not None:
            tb.add_scalar(f"{self.cfg.stage}/motion_feature_spread_eval", spread, step)
        if spread < COLLAPSE_SPREAD:
            self.log(f"warning: step {step}: the motion feature is constant in eval mode (spread {spread:.1e}): the "
                     "motion encoder has collapsed and codes read at inference would not follow the driving frames")

    def _write_final(self, acc, net, disc, step: int) -> None:
        model = acc.unwrap_model(net).model
        model.config.notes = (f"pdfgc train: stage {self.cfg.stage}, {step} steps, batch {self.cfg.batch_size} x "
                              f"{self.cfg.grad_accum} x {acc.num_processes} processes, seed {self.cfg.seed}")
        model.save_pretrained(self.run_dir / "model.safetensors")
        if disc is not None:
            save_discriminator(acc.unwrap_model(disc), self.run_dir / "discriminator.safetensors")
        elif self.cfg.init:  # a stage without GAN (lips) passes the previous stage's discriminator on [ours]
            init = Path(self.cfg.init)
            side = (init if init.is_dir() else init.parent) / "discriminator.safetensors"
            if side.is_file() and side.resolve() != (self.run_dir / "discriminator.safetensors").resolve():
                with atomic_path(self.run_dir / "discriminator.safetensors") as tmp:
                    shutil.copyfile(side, tmp)
        self.log(f"wrote {self.run_dir / 'model.safetensors'}")


def train_all(cfg: TrainConfig, steps: list[int], resume: bool = False, progress: bool = True) -> Path:
    """The four stages in order in RUN_DIR/<stage>/, each starting from the previous one's model.safetensors;
    RUN_DIR/model.safetensors is the last stage's model."""
    out = Path(cfg.out)
    init = cfg.init
    final = None
    for stage, n in zip(STAGES, steps):
        sub = dataclasses.replace(cfg, stage=stage, out=str(out / stage), init=init, steps=n,
                                  name=f"{cfg.name}-{stage}" if cfg.name else None)
        trainer = Trainer(sub, resume=resume, progress=progress)
        final = trainer.run()
        if trainer.stopped_early:  # the time budget: the next stages wait for this one (--resume goes on)
            return final
        init = str(final)
    if final is not None and _is_main():
        with atomic_path(out / "model.safetensors") as tmp:
            shutil.copyfile(final, tmp)
    return out / "model.safetensors"


def use_sync_bn(flag: bool | None, world: int, device_type: str) -> bool:
    """Whether to turn BatchNorm into SyncBatchNorm: per-GPU batches are small, and PD-FGC's encoders normalise
    with batch statistics. Default (None): on under DDP (world > 1) on GPUs. torch runs SyncBatchNorm on CUDA only
    (it raises on CPU tensors), so a CPU (gloo) run keeps BatchNorm, and asking for it there is an error."""
    if world <= 1:
        return False
    if device_type != "cuda":
        if flag:
            raise InputError("--sync-bn needs GPUs (torch's SyncBatchNorm runs on CUDA only); use --no-sync-bn")
        return False
    return True if flag is None else bool(flag)


def to_sync_batchnorm(model: torch.nn.Module) -> int:
    """Replace every BatchNorm layer of `model` by SyncBatchNorm in place (same parameters and buffers, so
    checkpoints keep their keys and load into plain BatchNorm); returns how many were replaced."""
    bn = torch.nn.modules.batchnorm._BatchNorm
    n = sum(isinstance(m, bn) and not isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # a non-BatchNorm root is converted in place
    return n


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def find_run_model(run_dir: str | os.PathLike) -> Path:
    """The model a run folder holds: its final model.safetensors, else its latest checkpoint's (for `all`
    runs, the last stage that has one)."""
    run = Path(run_dir)
    if (run / "model.safetensors").is_file():
        return run / "model.safetensors"
    for sub in [run] + [run / s for s in reversed(STAGES)]:
        if (sub / "model.safetensors").is_file():
            return sub / "model.safetensors"
        ck = latest_checkpoint(sub)
        if ck is not None:
            return ck / "model.safetensors"
    raise InputError(f"{run}: no model.safetensors and no checkpoint (is this a `pdfgc train` run folder?)")
