"""Training: augmentation, discriminator, optional VGG19, losses, batch sampling, each stage's losses falling on the
two real clips of `prepared_corpus` (tiny config), stage chaining and freezing, exact resume (new process and
kill -9), a 2-process CPU torchrun (gloo) run, the CLI's errors and `pdfgc export`."""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pdfgc.errors import CheckpointError, InputError
from pdfgc.training.harness import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
THREADS = 1  # training on a shared 2-core box: one thread per process is the fastest and stays deterministic


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": str(THREADS)}


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "pdfgc.cli", "train", *map(str, args), "--threads", str(THREADS), "--quiet"]


def _config(corpus, out, stage, **kw):
    from pdfgc.families.pdfgc.training.trainer import TrainConfig

    base = dict(stage=stage, data=str(corpus), out=str(out), model="tiny", steps=4, batch_size=2, lr=1e-3,
                log_every=1, checkpoint_every=1000, sample_every=1000, tensorboard=False)
    base.update(kw)
    return TrainConfig(**base)


def _train(cfg, resume=False):
    from pdfgc.families.pdfgc.training.trainer import Trainer
    return Trainer(cfg, resume=resume, progress=False, log=lambda m: None).run()


def _log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(str(path))


def _assert_same(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


# ------------------------------------------------------------------------------------------------ augmentation

def test_colour_jitter_neutral_factors_and_hsv_round_trip():
    from pdfgc.families.pdfgc.training.augment import AugmentConfig, color_jitter, hsv_to_rgb, rgb_to_hsv

    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 16, 16, generator=g)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(img)), img, atol=1e-5)
    neutral = AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0)
    assert torch.allclose(color_jitter(img, neutral, g), img, atol=1e-5)
    out = color_jitter(img, AugmentConfig(), g)
    assert out.shape == img.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert (out - img).abs().mean() > 1e-3


def test_perspective_identity_and_known_shift():
    from pdfgc.families.pdfgc.training.augment import warp_perspective

    img = torch.rand(3, 12, 10)
    corners = [[0, 0], [9, 0], [9, 11], [0, 11]]
    assert torch.allclose(warp_perspective(img, corners, corners), img, atol=1e-5)
    # every corner moved 2 px right: the content moves 2 px right, the first two columns become fill (0)
    moved = [[x + 2, y] for x, y in corners]
    out = warp_perspective(img, corners, moved)
    assert torch.allclose(out[:, :, 2:], img[:, :, :-2], atol=1e-5)
    assert float(out[:, :, :2].abs().max()) < 1e-6


def test_augment_is_a_function_of_the_generator():
    from pdfgc.families.pdfgc.training.augment import AugmentConfig, augment_driving

    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a = augment_driving(x, AugmentConfig(), torch.Generator().manual_seed(5))
    b = augment_driving(x, AugmentConfig(), torch.Generator().manual_seed(5))
    c = augment_driving(x, AugmentConfig(), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and float(a.min()) >= -1 and float(a.max()) <= 1


# ------------------------------------------------------------------------------------------------ networks

def test_discriminator_layout():
    from pdfgc.families.pdfgc.networks.discriminator import MultiscaleDiscriminator

    d = MultiscaleDiscriminator(ndf=8, n_layers=4, num_scales=2)
    out = d(torch.randn(2, 3, 64, 64))
    assert len(out) == 2 and all(len(s) == 5 for s in out)
    assert [f.shape[1] for f in out[0]] == [8, 16, 32, 64, 1]
    assert out[0][-1].shape[-1] > out[1][-1].shape[-1]  # the second scale sees the image at half size
    keys = d.state_dict().keys()
    assert any(k.endswith("weight_orig") for k in keys)  # spectral norm
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in d.modules()) == 2 * 3


def _vgg_state_dict():
    from pdfgc.families.pdfgc.networks.vgg import vgg19_features

    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, v in vgg19_features().state_dict().items():
        sd[f"features.{k}"] = torch.randn(v.shape, generator=g) * (0.05 if k.endswith("weight") else 0.01)
    sd["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files carry the classifier: ignored
    return sd


def test_vgg19_reads_a_torchvision_state_dict(tmp_path):
    from pdfgc.families.pdfgc.networks.vgg import VGG19Perceptual

    path = tmp_path / "vgg19.pth"
    torch.save(_vgg_state_dict(), path)
    vgg = VGG19Perceptual.from_file(path)
    assert torch.equal(vgg.features[0].weight, _vgg_state_dict()["features.0.weight"])
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(vgg(x, x)) == 0.0
    assert float(vgg(x, x.flip(-1))) > 0
    assert not any(p.requires_grad for p in vgg.parameters())


def test_vgg19_bad_files(tmp_path):
    from pdfgc.families.pdfgc.networks.vgg import VGG19Perceptual

    with pytest.raises(CheckpointError, match="not found"):
        VGG19Perceptual.from_file(tmp_path / "missing.pth")
    sd = _vgg_state_dict()
    del sd["features.28.weight"]
    torch.save(sd, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match="features.28.weight"):
        VGG19Perceptual.from_file(tmp_path / "short.pth")
    torch.save({"features.0.weight": object()}, tmp_path / "pickled.pth")  # needs unpickling: refused
    with pytest.raises(CheckpointError, match="cannot read"):
        VGG19Perceptual.from_file(tmp_path / "pickled.pth")


# ------------------------------------------------------------------------------------------------ losses

def test_gan_losses_known_values():
    from pdfgc.families.pdfgc.training import losses as L

    real = [[torch.zeros(1), torch.full((2, 1, 3, 3), 1.0)]] * 2
    fake = [[torch.zeros(1), torch.full((2, 1, 3, 3), -1.0)]] * 2
    assert float(L.hinge_d_loss(real, fake)) == 0.0           # both beyond the margin
    assert float(L.hinge_d_loss(fake, real)) == pytest.approx(4.0)  # (2 + 2) per scale, averaged
    assert float(L.hinge_g_loss(fake)) == pytest.approx(1.0)
    f = [[torch.ones(2, 4), torch.zeros(1)]]
    r = [[torch.zeros(2, 4), torch.ones(1)]]
    assert float(L.feature_matching_loss(f, r)) == pytest.approx(1.0)  # the logit map is left out


def test_lip_infonce_prefers_aligned_pairs():
    from pdfgc.families.pdfgc.training import losses as L

    g = torch.Generator().manual_seed(0)
    v = torch.randn(8, 16, generator=g)
    aligned = sum(L.lip_infonce(v, v + 0.01 * torch.randn(8, 16, generator=g)))
    shuffled = sum(L.lip_infonce(v, v[torch.randperm(8, generator=g)]))
    assert float(aligned) < 0.1 < math.log(8) < float(shuffled)
    logits = L.inverse_distance_logits(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]]), temperature=0.5)
    assert float(logits) == pytest.approx(1 / (math.sqrt(2) * 0.5), rel=1e-5)


def test_eye_infonce_and_pose_regression():
    from pdfgc.families.pdfgc.training import losses as L

    e1 = torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0]])
    e2 = torch.tensor([[0, 0, 1.0, 0, 0, 0], [0, 0, 0, 1.0, 0, 0]])
    assert float(L.eye_infonce(e1, e1, e2)) < 0.01 < float(L.eye_infonce(e2, e1, e2))
    assert float(L.pose_regression(torch.ones(2, 6), torch.zeros(2, 6))) == 1.0


def test_cross_correlation_and_memory_bank():
    from pdfgc.families.pdfgc.training import losses as L

    g = torch.Generator().manual_seed(0)
    y = torch.randn(400, 3, generator=g)
    assert float(L.cross_correlation(y[:, :1], y[:, :1])) == pytest.approx(1.0, abs=1e-4)
    assert float(L.cross_correlation(torch.randn(400, 2, generator=g), y)) < 0.02
    # decorrelating a code from y by gradient descent removes the shared part
    w = torch.tensor([[1.0], [0.5]], requires_grad=True)  # code = 1 * y0 + 0.5 * independent noise
    x_src = torch.cat([y[:, :1], torch.randn(400, 1, generator=g)], 1)
    opt = torch.optim.SGD([w], lr=0.5)
    first = None
    for _ in range(50):
        loss = L.cross_correlation(x_src @ w, y)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first
    bank = L.MemoryBank(2, 5)
    bank.push(torch.arange(6.0).view(3, 2))
    bank.push(torch.arange(6.0, 12.0).view(3, 2))
    assert bank.count == 5 and bank.ptr == 1
    assert bank.contents()[0].tolist() == [10.0, 11.0]  # the oldest row was overwritten
    other = L.MemoryBank(2, 5)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.contents(), bank.contents()) and other.ptr == 1


# ------------------------------------------------------------------------------------------------ batches

@pytest.fixture(scope="module")
def corpus(prepared_corpus):
    from pdfgc.data.corpus import PreparedCorpus
    return PreparedCorpus(prepared_corpus, split="train")


@pytest.mark.parametrize("stage", ["appearance", "lips", "pose_eye", "emotion"])
def test_batches_are_a_pure_function_of_the_position(corpus, stage):
    from pdfgc.families.pdfgc.model import PDFGC
    from pdfgc.families.pdfgc.testing import tiny_config
    from pdfgc.families.pdfgc.training.data import BatchSampler

    to_input = PDFGC(tiny_config()).network_input
    s = BatchSampler(corpus, stage, seed=3, batch_size=2, to_input=to_input)
    a, b = s.batch(5, 0, 0), BatchSampler(corpus, stage, seed=3, batch_size=2, to_input=to_input).batch(5, 0, 0)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = s.batch(5, 1, 0)  # another rank: another batch
    assert not all(torch.equal(a[k], other[k]) for k in a if a[k].dtype.is_floating_point)
    img = {"appearance": "source", "lips": "frames", "pose_eye": "v2", "emotion": "window"}[stage]
    assert a[img].shape[1:] == (3, 224, 224) and float(a[img].min()) >= -1 and float(a[img].max()) <= 1
    if stage == "lips":
        assert a["frames"].shape[0] == 2 * 4 and a["mel"].shape == (8, 1, 80, 20)
        assert a["mouth_mask"].shape == (2, 1, 224, 224) and 0 < float(a["mouth_mask"].mean()) < 0.2
    if stage == "pose_eye":
        # labels in radians (|yaw|, |pitch|, |roll| well under 90 degrees on these clips)
        assert float(a["pose_v1"][:, :3].abs().max()) < math.pi / 2
        diff = (a["anchor"] - a["v2"]).abs().sum(1)[0]  # the pasted eye region only
        assert float(diff.max()) > 0 and float((diff > 0.05).float().mean()) < 0.1
    if stage == "emotion":
        assert a["window"].shape[0] == 2 * 5


def test_lips_needs_audio(tmp_path, corpus):
    from pdfgc.families.pdfgc.training.data import BatchSampler

    class NoAudio:
        root = "no-audio"
        clips = [c for c in corpus.clips if not c.has_audio]

    with pytest.raises(InputError, match="with audio"):
        BatchSampler(NoAudio(), "lips", 0, 2, lambda x: x)


# ------------------------------------------------------------------------------------------------ stages

# per stage: the losses that must fall, and by how much: median of the last 5 steps < factor * mean of the first 3
# (the median: one GAN-disturbed step at the end must not decide)
MAIN_LOSSES = {
    "appearance": {"image_l1": 0.8, "face_l1": 0.8},
    "lips": {"lip_a2v": 0.9, "lip_v2a": 0.9, "mouth_l1": 1.0},
    "pose_eye": {"pose": 0.8, "eye_contrastive": 0.9, "image_l1": 1.0},
    "emotion": {"image_l1": 1.0, "face_l1": 1.0, "decorrelation": 1.0},
}


@pytest.mark.parametrize("stage", list(MAIN_LOSSES))
def test_stage_losses_fall(prepared_corpus, tmp_path, stage):
    from pdfgc.families.pdfgc.model import PDFGC

    run = tmp_path / stage
    cfg = _config(prepared_corpus, run, stage, steps=20, overfit=1, sample_every=20)
    final = _train(cfg)
    rows = _log(run)
    assert [int(r["step"]) for r in rows] == list(range(1, 21))
    for name, factor in MAIN_LOSSES[stage].items():
        v = [float(r[name]) for r in rows]
        first, last = np.mean(v[:3]), np.median(v[-5:])
        assert last < factor * first, f"{stage}: {name} {first:.4f} -> {last:.4f}"
    model = PDFGC.from_pretrained(final)
    assert model.config.trained and model.config.name == f"pdfgc-tiny-trained-{stage}"
    assert bool(model.config.pose_code_units) == (stage in ("pose_eye", "emotion"))
    grid = cv2.imread(str(run / "samples" / "step-000000020.png"))
    assert grid.shape == (2 * 224, 4 * 224, 3)  # rows: the batch; columns: portrait | driving | result | target
    assert (run / "discriminator.safetensors").is_file() == (stage != "lips")


def test_all_stages_chain_and_freeze(prepared_corpus, tmp_path):
    """`train_all`: each stage starts from the previous one's model; what a stage freezes stays bit-identical."""
    from pdfgc.families.pdfgc.training.trainer import train_all

    run = tmp_path / "all"
    cfg = _config(prepared_corpus, run, "appearance", steps=2, sample_every=2, tensorboard=True)
    final = train_all(cfg, [2, 2, 2, 2])
    assert final == run / "model.safetensors" and final.is_file()
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        pass
    else:  # TensorBoard events beside the CSV when the package is there
        assert all(list((run / s / "tb").glob("events.out.tfevents.*")) for s in ("appearance", "emotion"))
    w = {s: _weights(run / s / "model.safetensors") for s in ("appearance", "lips", "pose_eye", "emotion")}
    for s, prev in (("lips", "appearance"), ("pose_eye", "lips"), ("emotion", "pose_eye")):
        assert json.loads((run / s / "train.json").read_text())["init"] == str(run / prev / "model.safetensors")

    def same(a, b, prefix):
        keys = [k for k in w[a] if k.startswith(prefix)]
        return keys and all(torch.equal(w[a][k], w[b][k]) for k in keys)

    # lips has no GAN: it hands the appearance stage's discriminator on to pose_eye
    _assert_same(run / "lips" / "discriminator.safetensors", run / "appearance" / "discriminator.safetensors")
    assert not same("lips", "appearance", "audio.")           # lips trains the audio encoder ...
    assert not same("lips", "appearance", "motion.to_mouth.")  # ... and the visual mouth head
    for frozen in ("generator.", "appearance.", "motion.model.", "motion.to_eye.", "motion.to_headpose."):
        assert same("lips", "appearance", frozen), frozen
    assert not same("pose_eye", "lips", "motion.to_headpose.") and not same("pose_eye", "lips", "generator.")
    for frozen in ("audio.", "appearance.", "motion.model.", "motion.to_mouth.", "motion.to_emo."):
        assert same("pose_eye", "lips", frozen), frozen
    assert not same("emotion", "pose_eye", "motion.to_emo.") and not same("emotion", "pose_eye", "audio.")
    for frozen in ("appearance.", "motion.model.", "motion.to_eye.", "motion.to_headpose.", "motion.to_mouth."):
        assert same("emotion", "pose_eye", frozen), frozen


def test_perceptual_loss_in_training(prepared_corpus, tmp_path):
    torch.save(_vgg_state_dict(), tmp_path / "vgg19.pth")
    run = tmp_path / "vgg"
    _train(_config(prepared_corpus, run, "appearance", steps=1, vgg19=str(tmp_path / "vgg19.pth")))
    row = _log(run)[0]
    assert float(row["vgg"]) > 0
    parts = ("image_l1", "face_l1", "motion_invariance", "gan", "feature_matching", "vgg")
    assert float(row["total"]) == pytest.approx(sum(float(row[k]) for k in parts), rel=1e-5)


# ------------------------------------------------------------------------------------------------ resume

RESUME = dict(stage="emotion", steps=4, grad_accum=2)  # emotion: GAN, audio, memory banks, accumulation


@pytest.fixture(scope="module")
def uninterrupted(prepared_corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    _train(_config(prepared_corpus, run, checkpoint_every=2, **RESUME))
    return run


def test_resume_in_a_new_process_is_exact(prepared_corpus, uninterrupted, tmp_path):
    run = tmp_path / "halves"
    _train(_config(prepared_corpus, run, checkpoint_every=2, **{**RESUME, "steps": 2}))
    r = subprocess.run(_cli("--data", prepared_corpus, "--stage", "emotion", "--config", "tiny", "--out", run,
                            "--steps", 4, "--batch-size", 2, "--grad-accum", 2, "--lr", 1e-3, "--log-every", 1,
                            "--checkpoint-every", 2, "--resume"),
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stderr
    _assert_same(run / "model.safetensors", uninterrupted / "model.safetensors")
    _assert_same(run / "discriminator.safetensors", uninterrupted / "discriminator.safetensors")
    assert [int(x["step"]) for x in _log(run)] == [1, 2, 3, 4]
    assert [x["total"] for x in _log(run)] == [x["total"] for x in _log(uninterrupted)]


@pytest.mark.slow
def test_kill_9_then_resume_is_exact(prepared_corpus, uninterrupted, tmp_path):
    run = tmp_path / "killed"
    args = _cli("--data", prepared_corpus, "--stage", "emotion", "--config", "tiny", "--out", run, "--steps", 4,
                "--batch-size", 2, "--grad-accum", 2, "--lr", 1e-3, "--log-every", 1, "--checkpoint-every", 1,
                "--resume")
    proc = subprocess.Popen(args, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while not (run / "checkpoints" / "step-000000001").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "model.safetensors").exists()
    r = subprocess.run(args, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    _assert_same(run / "model.safetensors", uninterrupted / "model.safetensors")
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["step-000000003", "step-000000004"]  # the last two; no temporary folder left
    state = load_checkpoint(run / "checkpoints" / "step-000000004" / "train_state.safetensors", "pdfgc-stage")
    assert state["step"] == 4 and state["banks"]["emotion"]["count"] == 4 * 2 * 2


def test_export_and_cli_errors(prepared_corpus, uninterrupted, tmp_path, capsys):
    from pdfgc.cli import main
    from pdfgc.families.pdfgc.model import PDFGC

    out = tmp_path / "exported.safetensors"
    assert main(["export", str(uninterrupted), "-o", str(out), "--name", "mine"]) == 0
    m = PDFGC.from_pretrained(out)
    assert m.config.name == "mine" and m.config.trained
    _assert_same(out, uninterrupted / "model.safetensors")
    base = ["train", "--data", str(prepared_corpus), "--config", "tiny", "--steps", "1", "--quiet", "--threads", "1"]
    # a run folder with checkpoints is not overwritten without --resume
    assert main([*base, "--stage", "emotion", "--out", str(uninterrupted)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*base, "--stage", "emotion", "--out", str(uninterrupted), "--resume"]) == 0  # already done
    assert main(["train", "--data", str(tmp_path / "nothing"), "--stage", "lips", "--out", str(tmp_path / "r"),
                 "--steps", "1", "--quiet", "--threads", "1"]) == 2
    assert "manifest.json" in capsys.readouterr().err
    # the mesh-warp refiner stage: only with --config meshwarp, and a missing corpus is one error line
    assert main([*base, "--stage", "refiner", "--out", str(tmp_path / "r5")]) == 2
    assert "--config meshwarp" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "nothing"), "--config", "meshwarp", "--stage", "refiner",
                 "--out", str(tmp_path / "r6"), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("pdfgc: error:") == 1 and len(err.strip().splitlines()) == 1 and "nothing" in err
    assert main([*base, "--stage", "appearance", "--out", str(tmp_path / "r2"), "--precision", "fp16"]) == 2
    assert "GPU" in capsys.readouterr().err
    assert main([*base, "--stage", "all", "--out", str(tmp_path / "r3"), "--steps", "1,2"]) == 2
    assert main([*base, "--stage", "pose_eye", "--out", str(tmp_path / "r4"), "--batch-size", "1"]) == 2
    assert main(["export", str(tmp_path / "nothing"), "-o", str(out)]) == 2


# ------------------------------------------------------------------------------------------------ distributed

@pytest.mark.slow
def test_torchrun_two_cpu_processes(prepared_corpus, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29500 + os.getpid() % 1000), "-m", "pdfgc.cli", "train", "--data", str(prepared_corpus),
           "--stage", "appearance", "--config", "tiny", "--out", str(run), "--steps", "2", "--batch-size", "2",
           "--log-every", "1", "--checkpoint-every", "2", "--threads", "1", "--quiet"]
    r = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es)" in r.stderr and "gloo" in r.stderr
    ck = run / "checkpoints" / "step-000000002"
    ranks = [load_checkpoint(ck / f"rng-rank{i}.safetensors", "pdfgc-rng") for i in (0, 1)]
    assert ranks[0]["weights_digest"] == ranks[1]["weights_digest"]  # DDP kept the ranks' weights identical
    assert ranks[0]["batch_digest"] != ranks[1]["batch_digest"]      # on different batches
    assert [int(x["step"]) for x in _log(run)] == [1, 2]
    from pdfgc.families.pdfgc.model import PDFGC
    PDFGC.from_pretrained(run / "model.safetensors")


def test_motion_feature_spread_flags_an_encoder_that_is_constant_at_inference():
    """The eval-mode health check: a working encoder spreads frames apart; one whose output layer carries no
    signal (the collapse seen in a long CPU run) gives 0, below the warning threshold. Train mode is restored."""
    from pdfgc.families.pdfgc.testing import tiny_model
    from pdfgc.families.pdfgc.training.stages import COLLAPSE_SPREAD, motion_feature_spread

    torch.manual_seed(0)
    model = tiny_model()
    model.motion.model.train()
    frames = torch.rand(4, 3, model.config.image_size, model.config.image_size) * 2 - 1
    assert motion_feature_spread(model, frames) > 100 * COLLAPSE_SPREAD
    assert model.motion.model.training
    with torch.no_grad():
        model.motion.model.fc.weight.zero_()
    assert motion_feature_spread(model, frames) < COLLAPSE_SPREAD
