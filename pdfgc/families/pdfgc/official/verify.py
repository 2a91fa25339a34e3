"""`pdfgc verify-official FIXTURE_DIR`: rebuild the fixture's weights by rule, save them as the four official .pth
files, load them through our official loader, run the fixture's inputs through our pipeline, and compare every
array the official code recorded (spectrogram windows, encoder outputs, motion codes in the official call order,
style vectors, frames, the five-panel strip).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ....errors import InputError
from ....media import preprocess as pp
from ....pipeline import AnimateOptions, FrameComposer, TalkingHeadPipeline
from ..seeded_weights import official_noise
from .checkpoints import load_official
from .fixture import rule_official_state_dicts
from .layout import FILES

FLOAT_TOL = 1e-4
UINT8_TOL = 1


@dataclass
class Comparison:
    name: str
    shape: tuple
    max_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.max_diff <= self.tolerance)


def _load_fixture(folder: Path) -> tuple[dict, dict]:
    spec_path = folder / "fixture.json"
    if not spec_path.is_file():
        raise InputError(f"{folder}: no fixture.json (expected fixture.json + expected.npz + inputs)")
    try:
        spec = json.loads(spec_path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{spec_path}: not valid JSON ({e})") from None
    for k in ("seed", "portrait", "audio", "pose", "emotion", "eyes"):
        if k not in spec:
            raise InputError(f"{spec_path}: missing field '{k}'")
    npz = folder / spec.get("expected", "expected.npz")
    if not npz.is_file():
        raise InputError(f"{npz}: expected arrays not found")
    return spec, dict(np.load(npz))


def official_options(spec: dict, folder: Path):
    """The fixture's controls as pipeline options (an official flag that is off = zero code)."""
    c = {"mouth": True, "blink": True, "gaze": True, "emotion": True, "pose": True, **spec.get("controls", {})}
    p = lambda k: str((folder / spec[k]).resolve())
    return AnimateOptions(lips="audio" if c["mouth"] else "off", pose=p("pose") if c["pose"] else "off",
                          blink=p("eyes") if c["blink"] else "off", gaze=p("eyes") if c["gaze"] else "off",
                          emotion=p("emotion") if c["emotion"] else "off", eyes="off", align="never",
                          driving_mode="loop", precision="exact", progress=False)


def fixture_model(folder: str | Path, log=print, workdir: str | None = None):
    """(spec, expected arrays, model, noise maps or None): the fixture's rule weights saved as the four official
    .pth files and loaded through our official loader (noise maps from the fixture when it records them)."""
    folder = Path(folder)
    spec, exp = _load_fixture(folder)
    seed = int(spec["seed"])
    log(f"fixture {folder} (seed {seed}): building rule weights and saving them as official .pth files")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for network, sd in rule_official_state_dicts(seed).items():
            torch.save(sd, Path(tmp) / FILES[network])
        noise = None
        names = ["noise__conv1_noise"] + [f"noise__convs_{i}_noise" for i in range(10)]
        if all(n in exp for n in names):
            noise = [torch.from_numpy(exp[n]) for n in names]
        model = load_official(tmp, noise=noise)
    return spec, exp, model, noise


def verify_fixture(folder: str | Path, log=print, workdir: str | None = None, device: str = "cpu",
                   keep: dict | None = None) -> list[Comparison]:
    """Compare every recorded array; on `device` (cuda: expect small cuDNN differences). `keep`, when given,
    receives what the run built: frames ((T,3,224,224) in [-1,1], CPU), pipe, plan, portrait, options, spec."""
    folder = Path(folder)
    spec, exp, model, noise = fixture_model(folder, log, workdir)
    results: list[Comparison] = []

    def cmp(name, ours, tol=FLOAT_TOL):
        if name not in exp:
            return
        ref = exp[name]
        ours = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
        if ours.shape != ref.shape:
            results.append(Comparison(name, ref.shape, float("inf"), tol))
            log(f"  {name:30s} shape {ours.shape} != expected {ref.shape}  MISMATCH")
            return
        d = float(np.abs(ours.astype(np.float64) - ref.astype(np.float64)).max()) if ref.size else 0.0
        r = Comparison(name, ref.shape, d, tol)
        results.append(r)
        log(f"  {name:30s} {str(ref.shape):22s} max|diff| {d:.3g}  (tol {tol:g})  {'ok' if r.ok else 'MISMATCH'}")

    if noise is not None:
        cmp_noise = max(float((a - b.cpu()).abs().max()) for a, b in zip(noise, official_noise(model)))
        log(f"  noise maps: fixture vs official CPU draw (seed 20202001) max|diff| {cmp_noise:.3g}")

    pipe = TalkingHeadPipeline(model, device=device, threads=torch.get_num_threads())
    dev = pipe.device
    opt = official_options(spec, folder)
    portrait = pipe.load_portrait(folder / spec["portrait"], align="never")
    plan = pipe.plan(portrait, folder / spec["audio"], opt)
    T = plan.num_frames
    log(f"  {T} output frames")
    cmp("spectrogram_in", plan.mel_windows)
    with torch.inference_mode():
        feat, mouth_raw = model.audio(torch.from_numpy(plan.mel_windows).to(dev))
    cmp("audio_feature", feat)
    cmp("audio_mouth_embed_raw", plan.audio_mouth_raw if plan.audio_mouth_raw is not None else mouth_raw)
    cmp("app_in", pp.to_tensor(portrait.net_input))
    cmp("app_feat_vec", plan.appearance.vector)
    cmp("app_feat_map", plan.appearance.identity)

    # motion codes in the official call order: per batch of n frames, rows [pose n | emotion n | eye n]
    roles = [("pose", "pose"), ("emotion", "emotion"), ("eyes", "gaze" if "gaze" in plan.factor_index else "blink")]
    crops_by_role = {}
    for role, factor in roles:
        if factor in plan.panels:
            crops_by_role[role] = plan.panels[factor]
    if len(crops_by_role) == 3:
        bs = 8
        first = np.stack([crops_by_role[r][0][crops_by_role[r][1][0]] for r, _ in roles])
        cmp("motion_in_first", pp.to_tensor(first))
        rows = {"motion_headpose": [], "motion_eye": [], "motion_emo": [], "motion_mouthfeat": []}
        plan_rows = {"motion_headpose": [], "motion_eye": [], "motion_emo": []}
        with torch.inference_mode():
            for s in range(0, T, bs):
                idx = range(s, min(s + bs, T))
                frames = np.concatenate([np.stack([crops_by_role[r][0][crops_by_role[r][1][i]] for i in idx])
                                         for r, _ in roles])
                f = model.motion.unified_feature(pp.to_tensor(frames).to(dev))
                c = model.motion.codes_from_feature(f)
                rows["motion_headpose"].append(c.pose)
                rows["motion_emo"].append(c.emotion)
                rows["motion_eye"].append(c.eye)
                rows["motion_mouthfeat"].append(model.motion.to_mouth(f))
                # the pipeline's own (deduplicated, differently batched) codes, in the same row order
                for r, factor in roles:
                    key, fidx = plan.factor_index[factor]
                    mc = plan.motion_raw[key]
                    sel = torch.from_numpy(fidx[list(idx)])
                    plan_rows["motion_headpose"].append(mc.pose[sel])
                    plan_rows["motion_emo"].append(mc.emotion[sel])
                    plan_rows["motion_eye"].append(mc.eye[sel])
        for k, v in rows.items():
            cmp(k, torch.cat(v))
        for k, v in plan_rows.items():
            if k in exp:
                d = float(np.abs(torch.cat(v).numpy() - exp[k]).max())
                r = Comparison(k + " (pipeline)", exp[k].shape, d, FLOAT_TOL)
                results.append(r)
                log(f"  {k + ' (pipeline)':30s} {str(exp[k].shape):22s} max|diff| {d:.3g}  (tol {FLOAT_TOL:g})  "
                    f"{'ok' if r.ok else 'MISMATCH'}")
    cmp("gen_style", pipe.family.styles(plan, slice(0, T)))

    frames = []
    for sl, images in pipe.render(plan, opt):
        frames.append(images)
    images = torch.cat(frames).cpu()
    if keep is not None:
        keep.update(frames=images, pipe=pipe, plan=plan, portrait=portrait, options=opt, spec=spec)
    cmp("gen_image_first8", images[:8])
    cmp("generated_panel_bgr_uint8", pp.to_uint8_truncated(images)[..., ::-1], UINT8_TOL)
    composer = FrameComposer(model, portrait, plan, "panels")
    strip = composer(slice(0, 1), images[:1])[0]
    cmp("five_panel_frame0_bgr_uint8", strip[..., ::-1], UINT8_TOL)
    bad = [r for r in results if not r.ok]
    log(f"{len(results) - len(bad)}/{len(results)} arrays within tolerance" + (": PASS" if not bad else ": FAIL"))
    return results
