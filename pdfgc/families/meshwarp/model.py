"""The mesh-warp model as a pipeline family: face-mesh codes in, the portrait's own pixels warped out.

Codes in a plan are CHANGES from the portrait (so "still", "off" and a zero code all mean the portrait's own face,
and a multiplier scales the motion, not the face):

- pose (6): d yaw, d pitch, d roll [deg], d tx, d ty [face-centre shift in face scales], d log-scale;
- eye (4): d lid opening of eye 0 and eye 1 (lids = the portrait's own opening x (1 + d); -1 = closed), d gaze h, v
  (``signals.gaze`` units, v down); blink dims (0, 1), gaze dims (2, 3);
- mouth (Dm): change of the mouth code (``codes.py``), 0 = the portrait's own;
- emotion (De + Dm + 2 + L): change of the expression code, then the expression's resting mouth shape (a smile's
  corners live in the mouth points, which the expression code leaves to speech): added to the mouth at render
  time, then the expression's lid opening change per eye (surprise widens the eyes; lids = own x (1 + d eye) x
  (1 + this)), then one weight per label of the expression ratio images (``emotion_texture.py``: the folds and
  lines a warp cannot paint; 0 = the portrait's own skin), so an emotion control still sets only the emotion code.

Head angle changes (explicit or from a pose video) are rendered through the portrait's pose calibration
(``calibration.py``: the angles that read back as asked on this face, less what the plan's mouth and expression
alone read as), probed on the first frame that turns the head.

A driving clip's codes are measured on its 224 crops and retargeted relative to its most neutral frame
(``AnimateOptions.driving_reference``: "auto": eyes open, mouth closed, near frontal; or "first"); lips from speech
come from the lips head on Whisper base's lower encoder blocks (``lips.py``: 16 kHz speech -> mouth code, the
speech-aware rules, and a smoothing that keeps closures).
"""
from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ...controls.explicit import POSE_CHANNELS, REFERENCE_MAX_FRAMES, controls_of
from ...errors import InputError
from ...media.driving import open_driving
from ...media.driving_cache import clip_meshes
from ...media.geometry import matrix_scale
from ...media.mesh import FaceMeshDetector
from ...vocabulary import DRIVING_REFERENCES, MESHWARP
from ..base import Codes, ModelFamily, progress_bar, register_family
from . import codes as C
from .calibration import PoseCalibration, calibrate_leak, calibrate_pose
from .emotion_texture import DEFAULT_PATH as EXPRESSIONS_PATH
from .emotion_texture import ExpressionRatios
from .lips import KIND as LIPS_KIND
from .lips import SpeechToMouth, from_params, smooth_keeping_closures
from .options import REFINER_STAGE, TRAINING, MeshWarpOptions
from .params import DEFAULT_PATH, FORMAT, MeshParams, load_params
from .refiner import RefinerRunner, load_refiner, refiner_path_for
from .warp import WarpRenderer

MAX_RENDER = 512
FAMILY = MESHWARP


@dataclass
class MeshWarpConfig:
    name: str = MESHWARP
    trained: bool = True
    notes: str = ""


class MeshWarpModel:
    """The parameters (code bases, emotion shapes, lips head) of the mesh-warp family; no generator."""

    family = FAMILY

    def __init__(self, params: MeshParams, path: Path | None = None, refiner=None, expressions=None):
        self.params = params
        self.weights_path = path
        self.refiner = refiner   # refiner.Refiner or None: the warp alone
        # the labels' expression ratio images (emotion_texture.py): None = the shipped file when there is one, a
        # path = that file, False = none (labels move the mesh only)
        if expressions is None:
            expressions = EXPRESSIONS_PATH if EXPRESSIONS_PATH.is_file() else False
        if expressions is not False and not isinstance(expressions, ExpressionRatios):
            expressions = ExpressionRatios.load(expressions)
        self.expressions = expressions or None
        self.config = MeshWarpConfig(notes="face-mesh codes + a 3D-aware warp of the portrait's pixels")
        # a file from before the Whisper head (a mel network under audio.*) has no lips from speech
        self.lips_head = from_params(params) if (params.audio_config or {}).get("kind") == LIPS_KIND else None
        self._lips = None
        self._lips_lock = threading.Lock()   # the encoder may be loaded by a job's warm-up thread (warm_up)

    @property
    def lips(self) -> SpeechToMouth:
        """The speech encoder + lips head, the encoder's weights read (and hash-checked) on first use."""
        with self._lips_lock:
            if self._lips is None:
                self._lips = SpeechToMouth(self.lips_head)
        return self._lips

    @classmethod
    def from_pretrained(cls, path=None, refiner=None) -> "MeshWarpModel":
        """`refiner`: None = ``<params stem>_refiner.safetensors`` beside the params file when there is one, a path
        = that file, False = none."""
        params = load_params(path)
        if refiner is None:
            auto = refiner_path_for(path if path is not None else DEFAULT_PATH)
            refiner = auto if auto.is_file() else False
        net = load_refiner(refiner) if refiner is not False else None
        return cls(params, Path(path) if path is not None else None, net)

    def to(self, device):
        return self   # the lips run on the CPU: one small encoder pass per 3 s chunk

    def eval(self):
        return self

    def describe(self) -> str:
        p = self.params
        audio = sum(t.numel() for t in (p.audio_state or {}).values())
        return (f"meshwarp: mouth code {p.mouth_dim}, emotion code {p.emotion_dim}, emotion labels "
                f"{', '.join(sorted(p.emotion_shapes)) or 'none'}, lips head {audio:,} parameters on Whisper base; "
                f"fitted: {json.dumps(p.info.get('summary', {}))[:200]}; refiner: "
                f"{'none' if self.refiner is None else sum(t.numel() for t in self.refiner.parameters())}")


@dataclass
class MeshPortrait:
    """Everything the renderer needs of one portrait, at render resolution S."""

    image: np.ndarray          # (S,S,3) uint8
    mesh: np.ndarray           # (478,3) on `image`
    codes: C.MeshCodes         # the portrait's own absolute codes (one frame)
    renderer: WarpRenderer
    size: int
    refiner: object = None     # refiner.RefinerRunner bound to this portrait, None: the warp alone
    expression: object = None  # emotion_texture.ExpressionTexture bound to this portrait, None: no ratio images
    # requested -> rendered angle changes (calibration.py): probed on the first frame that turns the head;
    # calibrate=False renders the requested angles as they are (the warp's global depth gain only)
    pose_calibration: PoseCalibration | None = None
    calibrate: bool = True
    leak_cache: dict = field(default_factory=dict)   # the current plan's expression -> angle leak (calibration.py)
    angle_cache: dict = field(default_factory=dict)  # the current plan's render angles (MeshWarpFamily._render_angles)


def render_size(portrait) -> int:
    """The portrait's own crop resolution (the photo pixels under the 224 crop), in [224, 512], a multiple of 16."""
    if portrait.to_crop is None:
        return 224
    native = 224.0 / max(matrix_scale(portrait.to_crop), 1e-6)
    return int(min(MAX_RENDER, max(224, round(native / 16) * 16)))


def crop_at(portrait, size: int) -> np.ndarray:
    """The aligned crop at `size` px straight from the photo (sharper than upsampling the 224 crop).

    Where the crop reaches past the photo (a tightly framed head shot) the photo is mirrored at its edge: replicated
    edge rows became vertical streaks once the warp moved them (issue 19), black ones a hard frame."""
    k = size / 224.0
    m = np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5]]) @ np.vstack([portrait.to_crop, [0, 0, 1]])
    h, w = portrait.original.shape[:2]
    e = size - 0.5
    corners = cv2.transform(np.array([[[-0.5, -0.5], [e, -0.5], [-0.5, e], [e, e]]]), cv2.invertAffineTransform(m))[0]
    inside = bool((corners >= -0.5 - 1e-3).all() and (corners[:, 0] <= w - 0.5 + 1e-3).all()
                  and (corners[:, 1] <= h - 0.5 + 1e-3).all())
    if size == 224 and inside:
        return portrait.crop
    flags = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(portrait.original, m, (size, size), flags=flags, borderMode=cv2.BORDER_REFLECT_101)
    if inside:
        return crop
    # the mirror fades into its own blur with the distance from the edge (a sharp mirrored chin reads as a face)
    photo = cv2.warpAffine(np.full((h, w), 255, np.uint8), m, (size, size), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    far = cv2.distanceTransform((photo == 0).astype(np.uint8), cv2.DIST_L2, 3)
    t = np.clip(far / (0.08 * size), 0.0, 1.0)[..., None]
    soft = cv2.GaussianBlur(crop, (0, 0), 0.04 * size).astype(np.float32)
    return np.clip(crop * (1.0 - t) + soft * t + 0.5, 0, 255).astype(np.uint8)


def _refiner_steps(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--steps: expected a number, got '{text}'") from None


@register_family
class MeshWarpFamily(ModelFamily):
    name = FAMILY
    format = FORMAT
    options = MeshWarpOptions
    official_crop = False
    generates_pose = True      # pose code in degrees: motion.py's generated head motion drives it
    speech_beside_faces = True  # the lips (Whisper on the CPU) run in a thread beside the face-mesh work
    # frames render on one thread per pipeline thread (the warp's OpenCV/numpy kernels release the GIL: 1.45x on two
    # cores, benchmarks/bench_main_command.py); the frames are the same whatever the count (tests/test_speed.py)
    render_threads = 0
    # the portrait (static detector) and each driving clip (its own tracker) measured at once: a mediapipe graph is
    # latency-bound (one graph: 2.0 s wall for 1.25 s CPU on 200 frames; two at once: 0.95 s for the same CPU), so
    # more graphs than cores still gain
    face_jobs_at_once = 4
    blink_dims = C.BLINK_DIMS
    gaze_dims = C.GAZE_DIMS
    training = TRAINING

    # ---- weights, training (control fitting: none, the codes are physical) --------------------------------------
    @classmethod
    def load(cls, path):
        return MeshWarpModel.from_pretrained(path)

    @classmethod
    def save(cls, model, path):
        """The parameters file (the refiner, when there is one, is its own file: ``refiner_path_for``)."""
        from .params import save_params
        return save_params(model.params, path)

    @classmethod
    def train(cls, args) -> int:
        threads = args.threads or 1
        if args.stage == REFINER_STAGE:
            if args.steps is None:
                raise InputError("--steps is required (optimiser steps of the stage)")
            # continued from the run folder's checkpoint with --resume (pdfgc.training.harness's policy)
            import cv2

            from . import refine_train as R
            steps = _refiner_steps(args.steps)
            torch.set_num_threads(threads)
            cv2.setNumThreads(1)
            data = Path(args.data)
            train_root = R.build_cache(data, R.DEFAULT_CACHE, "train", args.seed)
            held_root = R.build_cache(data, R.DEFAULT_CACHE, "heldout", args.seed)
            R.train(R.open_cache(train_root), Path(args.out), steps, seed=args.seed, ckpt_every=200, log_every=50,
                    eval_every=1000, heldout=R.open_cache(held_root), minutes=args.minutes, resume=args.resume)
            return 0
        # the geometry fit and the lips head are closed-form fits: no step count or time budget to honour
        # (a stopped fit continues with --resume: the geometry and each clip's speech features are kept)
        for flag, value in (("--steps", args.steps), ("--minutes", args.minutes)):
            if value is not None:
                raise InputError(f"{flag} does not apply to --config {MESHWARP} without --stage (closed-form fits: "
                                 "stop it any time and continue with --resume)")
        from .train import train
        train(Path(args.data), Path(args.out), resume=args.resume, threads=threads,
              speech_cache=Path(args.speech_cache) if args.speech_cache else None, layers=[2, 3, 4])
        return 0

    # ---- inference ------------------------------------------------------------------------------------------
    def __init__(self, model: MeshWarpModel, device):
        super().__init__(model, device)
        self.params = model.params
        self._detector = None
        # pose calibrations of the last portraits this family rendered, by content (`_portrait_key`): a second job
        # on the same portrait (the web UI, the API) skips the probes (~0.6 s); in memory only
        self._calibrations: OrderedDict = OrderedDict()
        self._warming = None   # the warm-up thread (warm_up)
        self._angle_lock = threading.Lock()   # render threads share one solve of the plan's angles
        self._render_local = threading.local()   # each render thread's own copy of the renderer (_renderer_of)

    @property
    def expression_labels(self) -> list[str]:
        """The labels with an expression ratio image, in the order of the emotion code's last dims."""
        return self.model.expressions.labels if self.model.expressions is not None else []

    @property
    def code_dims(self) -> dict[str, int]:
        return {"mouth": self.params.mouth_dim,
                "emotion": self.params.emotion_dim + self.params.mouth_dim + 2 + len(self.expression_labels),
                "eye": 4, "pose": 6}

    def label_code(self, label: str) -> np.ndarray:
        """(De + Dm + 2 + L,) the emotion code of a label at level 1: expression, resting mouth, lids, and its
        ratio image's weight."""
        p = self.params
        shading = np.zeros(len(self.expression_labels), np.float32)
        name = p._label(label)
        if name in self.expression_labels:
            shading[self.expression_labels.index(name)] = 1.0
        return np.concatenate([p.emotion_code(label), p.emotion_mouth(label), p.emotion_lid(label), shading])

    def batch_size(self, kind: str, precision: str = "exact", requested: int | None = None) -> int:
        if requested:
            return int(requested)
        return {"motion": 32, "audio": 256}.get(kind, 8)

    def detector(self) -> FaceMeshDetector:
        if self._detector is None:
            self._detector = FaceMeshDetector(static_image_mode=True, max_num_faces=1)
        return self._detector

    def _mesh(self, image: np.ndarray) -> np.ndarray | None:
        faces = self.detector().detect(image)
        return faces[0] if faces else None

    # ---- encoders ---------------------------------------------------------------------------------------------
    def encode_portrait(self, portrait, prec, opt=None):
        size = render_size(portrait)
        image = np.ascontiguousarray(crop_at(portrait, size))
        mesh = self._mesh(image)
        if mesh is None and size != 224:
            size, image = 224, np.ascontiguousarray(portrait.crop)
            mesh = self._mesh(image)
        if mesh is None:
            raise InputError("portrait: the face mesh finds no face in the aligned crop")
        own = C.measure(mesh[None], self.params, reference=None, smooth=False)
        runner = None
        if self.model.refiner is not None and getattr(opt, "refiner", False):
            runner = RefinerRunner(self.model.refiner, image)
        # the refiner (session 33) learned on the default warp (real mouth bank, sliding lid, stretched fill): with
        # --refiner the frames are the default renderer's, the refiner paints over them (refine_train.AUX_VERSION 3)
        state = MeshPortrait(image, mesh, own, WarpRenderer(image, mesh), size, runner,
                             expression=self.model.expressions.bind(image, mesh) if self.model.expressions else None)
        zeros = Codes(**{k: torch.zeros(1, d) for k, d in self.code_dims.items()})
        return state, zeros

    def warm_up(self, opt) -> None:
        """Set-ups that need no input, started on a thread as a job begins (the pipeline calls this when it has
        more than one thread): the speech encoder's weights (read, SHA-256-checked and built, ~1 s of CPU) when the
        lips come from speech, while the portrait, the audio and the clips are read. A failure here is left to
        `encode_speech`, which raises it as usual."""
        busy = self._warming is not None and self._warming.is_alive()
        loaded = self.model.lips_head is None or self.model._lips is not None
        if busy or loaded or getattr(opt, "lips", None) != "audio":
            return

        def load():
            try:
                self.model.lips
            except Exception:  # noqa: BLE001 - reported by encode_speech, on the job's thread
                pass
        self._warming = threading.Thread(target=load, name="pdfgc-warm-up")
        self._warming.start()

    def prepare_portrait(self, st: MeshPortrait, opt) -> None:
        """Before the frames of a job whose options turn the head: the portrait's pose calibration (it needs only
        the portrait; the pipeline calls this while the driving clips and the speech are measured on other
        threads, instead of before the first frame)."""
        if st.calibrate and _turns_head(opt):
            self._pose_calibration(st)

    def _pose_calibration(self, st: MeshPortrait) -> PoseCalibration:
        if st.pose_calibration is None:
            key = _portrait_key(st)
            cal = self._calibrations.get(key)
            if cal is None:
                cal = self.calibrate_pose(st)
                self._calibrations[key] = cal
                while len(self._calibrations) > CALIBRATIONS_KEPT:
                    self._calibrations.popitem(last=False)
            self._calibrations.move_to_end(key)
            st.pose_calibration = cal
        return st.pose_calibration

    def calibrate_pose(self, state: MeshPortrait) -> PoseCalibration:
        """Probe rotations of this portrait measured back (calibration.py): how its render answers a turn."""
        own = state.codes

        def render_angles(d):
            c = own.copy()
            c.pose[0, :3] += np.asarray(d, np.float32)
            return state.renderer.render(C.compose(state.mesh, own, c, self.params)[0])
        return calibrate_pose(state.mesh, render_angles, self._mesh)

    def encode_clip(self, clip, used, want_mouth, prec, opt=None, progress=False) -> Codes:
        """The used frames' codes as changes from the clip's neutral frame (`opt.driving_reference`)."""
        return self._relative(self._clip_meshes(clip, used, progress, getattr(opt, "cache", True)),
                              np.array(sorted(set(int(i) for i in used))), opt)

    def _clip_meshes(self, clip, used, progress=False, cache=True) -> np.ndarray:
        """(frames, 478, 3) mesh of every frame of the clip: measured on the used ones (a frame without a face
        takes the nearest one's); with `cache`, the meshes kept from an earlier job with the same clip and crops
        (`pdfgc.media.driving_cache`: the tracker's output bit for bit), else measured and kept."""
        uniq = clip.unique_index()
        todo = sorted({int(uniq[i]) for i in used})
        meshes = np.full((clip.num_frames, 478, 3), np.nan)
        bar = None

        def tick():
            nonlocal bar
            if bar is None:   # measured, not read from the cache: the bar appears with the first frame
                bar = progress_bar(len(todo), progress and len(todo) > 100, f"face mesh {clip.path.name}") or False
            if bar:
                bar.update(1)
        try:
            meshes[todo] = clip_meshes(clip, todo, cache, on_frame=tick)
        finally:
            if bar:
                bar.close()
        meshes = meshes[uniq]
        ok = np.isfinite(meshes).all(axis=(1, 2))
        if not ok.any():
            raise InputError(f"driving source {clip.path}: the face mesh finds no face in its frames")
        good = np.flatnonzero(ok)
        nearest = good[np.abs(np.arange(len(meshes))[:, None] - good[None]).argmin(1)]
        return meshes[nearest]

    def _relative(self, meshes: np.ndarray, used: np.ndarray, opt) -> Codes:
        mode = getattr(opt, "driving_reference", "auto") or "auto"
        sub = meshes[used]
        if mode not in DRIVING_REFERENCES:
            raise InputError(f"unknown driving reference '{mode}' ({' or '.join(DRIVING_REFERENCES)})")
        ref = C.neutral_reference(sub, mode)
        d = C.retarget(C.measure(sub, self.params, reference=ref), ref)
        out = {k: torch.zeros(len(meshes), v) for k, v in self.code_dims.items()}
        u = torch.from_numpy(used)
        out["pose"][u] = torch.from_numpy(_pose_change(d.pose))
        eye = d.eye.astype(np.float64).copy()
        eye[:, :2] -= 1.0
        out["eye"][u] = torch.from_numpy(np.nan_to_num(eye).astype(np.float32))
        out["mouth"][u] = torch.from_numpy(d.mouth)
        out["emotion"][u, :self.params.emotion_dim] = torch.from_numpy(d.emotion)
        return Codes(**out)

    def _need_lips(self):
        if self.model.lips_head is None:
            raise InputError("this meshwarp parameters file has no lips head: lips from speech need one "
                             "(use --lips VIDEO, still or off)")

    def encode_speech(self, speech, num_frames, prec=None, batch=None) -> torch.Tensor:
        """(num_frames, Dm) mouth codes from the 16 kHz speech signal (Whisper, not mel windows), with the
        speech-aware rules (``lips.py``)."""
        self._need_lips()
        return torch.from_numpy(self.model.lips.codes(speech.wav16k, num_frames))   # the pipeline smooths

    def smooth(self, factor: str, codes: torch.Tensor) -> torch.Tensor:
        if factor == "mouth":
            return smooth_keeping_closures(codes)   # the official filter, except on closed frames
        return super().smooth(factor, codes)

    def auto_pose(self, speech, num_frames, seed, still=None) -> torch.Tensor:  # codes are changes: `still` is 0
        from .motion import MotionModel, speech_loudness
        pose = torch.zeros(int(num_frames), self.code_dims["pose"])
        angles = MotionModel.load().head_angles(speech_loudness(speech, num_frames), seed)
        pose[:, :3] = torch.from_numpy(angles).float()
        return pose

    # ---- explicit controls: physical units straight into the codes ----------------------------------------------
    def preflight_controls(self, opt) -> None:
        controls = controls_of(opt)
        if "emotion" in controls and controls["emotion"].reference is None:
            for label in controls["emotion"].weights():
                self.params.emotion_code(label)   # an unknown label fails here, naming the known ones
        if "pose" in controls and controls["pose"].curve is not None:
            controls["pose"].curves(1)

    def info(self) -> dict:
        p = self.params
        return {**super().info(), "weights": str(self.model.weights_path or "packaged"),
                "codes": self.code_dims, "emotion_labels": sorted(p.emotion_shapes),
                "expression_ratio_labels": self.expression_labels,
                "lips_head_parameters": sum(t.numel() for t in (p.audio_state or {}).values()),
                "refiner_parameters": (sum(t.numel() for t in self.model.refiner.parameters())
                                       if self.model.refiner is not None else 0),
                "fitted": p.info.get("summary", p.info.get("data", ""))}

    def control_summary(self) -> tuple[list[str], str]:
        labels = sorted(k for k in self.params.emotion_shapes)
        return labels, ("Explicit controls act directly on this model's face-mesh codes, in physical units "
                        f"(no fitted mapping needed); emotion labels {', '.join(labels) or 'none'}.")

    def apply_controls(self, opt, num_frames, codes: Codes, appearance: MeshPortrait, still, prec) -> Codes:
        """Absolute angles and gaze are changes from the portrait's own measured codes (`appearance.codes`)."""
        controls = controls_of(opt)
        if not controls:
            return codes
        t = int(num_frames)
        mouth, eye, emotion, pose = (codes.mouth.clone(), codes.eye.clone(), codes.emotion.clone(),
                                     codes.pose.clone())

        def own():
            return appearance.codes
        if "pose" in controls:
            ctl = controls["pose"]
            k = float(opt.pose_intensity)
            for j, ch in enumerate(POSE_CHANNELS):
                curve = ctl.curves(t).get(ch)
                if curve is None:
                    continue
                v = np.asarray(curve, np.float64)
                if ch == "scale":     # a scale factor -> log-scale change
                    v = np.log(np.maximum(v, 1e-3)) if not ctl.relative else np.log1p(np.maximum(v, -0.99))
                if ctl.relative:
                    pose[:, j] = pose[:, j] + k * torch.from_numpy(v).float()
                elif j < 3:
                    pose[:, j] = k * torch.from_numpy(v - float(own().pose[0, j])).float()
                else:
                    pose[:, j] = k * torch.from_numpy(v).float()
        if "blink" in controls:
            o = controls["blink"].openness_curve(t)
            scale = 1.0 if opt.blink_intensity is None else opt.blink_intensity
            eye[:, 0] = eye[:, 1] = scale * torch.from_numpy(np.asarray(o, np.float64) - 1.0).float()
        if "gaze" in controls:
            hv = controls["gaze"].curves(t)
            target = C.gaze_from_control(hv, self.params.gaze_center)
            scale = 1.0 if opt.gaze_intensity is None else opt.gaze_intensity
            eye[:, 2:4] = scale * torch.from_numpy(target - own().eye[0, 2:4].astype(np.float64)).float()
        if "emotion" in controls:
            ctl = controls["emotion"]
            scale = 1.0 if opt.emotion_intensity is None else opt.emotion_intensity
            if ctl.reference is not None:
                code = self._reference_emotion(ctl.reference, opt) * ctl.intensity
            else:
                code = sum((w * self.label_code(label) for label, w in ctl.weights().items()),
                           np.zeros(self.code_dims["emotion"]))
            emotion = (scale * torch.as_tensor(np.asarray(code, np.float32))).expand(t, -1).clone()
        if "lip" in controls:
            ctl = controls["lip"]
            if ctl.intensity != 1:
                mouth = ctl.intensity * mouth
            w = torch.from_numpy(ctl.mute_weights(t)).to(mouth.dtype)[:, None]
            mouth = (1 - w) * mouth   # a muted mouth: the portrait's own (closed) mouth
        return Codes(mouth=mouth.contiguous(), emotion=emotion.contiguous(), eye=eye.contiguous(),
                     pose=pose.contiguous())

    def _reference_emotion(self, path, opt) -> np.ndarray:
        clip = open_driving(str(path), REFERENCE_MAX_FRAMES, opt.align, False, role="emotion reference")
        n = min(clip.num_frames, REFERENCE_MAX_FRAMES)
        meshes = self._clip_meshes(clip, list(range(n)), cache=getattr(opt, "cache", True))
        rel = C.measure(meshes[:n], self.params, reference=None)
        expression = rel.emotion.mean(0) - self.params.emotion_shapes.get("neutral", 0.0)
        rest = self.code_dims["emotion"] - len(expression)
        return np.concatenate([expression, np.zeros(rest)]).astype(np.float32)

    # ---- frames -----------------------------------------------------------------------------------------------
    def target_meshes(self, plan, sl: slice) -> np.ndarray:
        """(B,478,3) target meshes in the portrait's render pixels for frames `sl`."""
        st: MeshPortrait = plan.appearance
        pose = plan.pose[sl].double().numpy()
        angles = pose[:, :3]
        if st.calibrate and np.any(plan.pose[:, :3].numpy()):
            angles = self._render_angles(plan)[sl]
        return self._targets(st, np.concatenate([angles, pose[:, 3:]], 1), plan.eye[sl].double().numpy(),
                             plan.mouth[sl].numpy(), plan.emotion[sl].numpy())

    def _render_angles(self, plan) -> np.ndarray:
        """(T,3) the angles to render so that this portrait's render reads the plan's requested changes back
        (calibration.py): first less what each frame's mouth and expression alone read as (a raised brow reads as
        pitch). Solved once per plan for all its frames (row by row the same numbers as batch by batch: ~0.3 s of
        CPU a job less than a solve per render batch)."""
        st: MeshPortrait = plan.appearance
        cache = st.angle_cache
        with self._angle_lock:
            if id(plan) not in cache:
                calibration = self._pose_calibration(st)
                leak = self._expression_leak(plan)
                angles = plan.pose[:, :3].double().numpy()
                if leak is not None:
                    angles = angles - self._shape_changes(plan) @ leak
                cache.clear()   # one plan at a time (the reference keeps its id from being reused)
                cache[id(plan)] = (plan, calibration.invert(angles))
            return cache[id(plan)][1]

    def prepare_render(self, plan) -> None:
        """The plan's lazy set-ups (the expression leak, the portrait's pose calibration), made before frames render
        on several threads."""
        st: MeshPortrait = plan.appearance
        if st.calibrate and np.any(plan.pose[:, :3].numpy()):
            self._render_angles(plan)

    def _shape_changes(self, plan, sl=slice(None)) -> np.ndarray:
        """(B, Dm + De + Dm + 2) the plan's mouth and emotion changes side by side (what can read as a turn)."""
        return np.concatenate([plan.mouth[sl].double().numpy(), plan.emotion[sl].double().numpy()], 1)

    def _expression_leak(self, plan) -> np.ndarray | None:
        """(Dm + De + Dm + 2, 3) the head angles mediapipe reads per unit of the plan's mouth/emotion change on this
        portrait (calibration.calibrate_leak), probed once per plan; None when the plan changes neither."""
        st: MeshPortrait = plan.appearance
        cache = st.leak_cache
        if id(plan) not in cache:
            x = self._shape_changes(plan)
            dm = self.params.mouth_dim

            def render_shape(v):
                v = np.asarray(v, np.float64)[None]
                return st.renderer.render(self._targets(st, np.zeros((1, 6)), np.zeros((1, 4)), v[:, :dm],
                                                        v[:, dm:])[0])
            cache.clear()   # one plan at a time (the reference keeps its id from being reused)
            cache[id(plan)] = (plan, calibrate_leak(x, render_shape, self._mesh))
        return cache[id(plan)][1]

    def _targets(self, st: MeshPortrait, pose, eye, mouth, emo) -> np.ndarray:
        """Target meshes for (B,6) pose changes (angles as rendered), (B,4) eye, (B,Dm) mouth and (B,De+Dm+2)
        emotion changes of the plan."""
        own = st.codes
        b = pose.shape[0]
        op = own.pose.astype(np.float64)
        abs_pose = np.repeat(op, b, 0)
        abs_pose[:, :3] += pose[:, :3]
        abs_pose[:, 5] += pose[:, 5]
        centre = op[:, 3:5] * np.exp(op[:, 5:6]) + pose[:, 3:5] * np.exp(op[:, 5:6])
        abs_pose[:, 3:5] = centre / np.exp(abs_pose[:, 5:6])
        abs_eye = np.repeat(own.eye.astype(np.float64), b, 0)
        de, dm = self.params.emotion_dim, self.params.mouth_dim
        abs_eye[:, :2] *= np.maximum(1.0 + eye[:, :2], 0.0) * np.maximum(1.0 + emo[:, de + dm:de + dm + 2], 0.0)
        abs_eye[:, 2] += eye[:, 2]
        abs_eye[:, 3] += C.GAZE_V_RENDER_GAIN * eye[:, 3]   # see codes.GAZE_V_RENDER_GAIN
        codes = C.MeshCodes(abs_pose, abs_eye, own.mouth + mouth + emo[:, de:de + dm], own.emotion + emo[:, :de])
        return C.compose(st.mesh, own, codes, self.params)

    def render(self, plan, sl, prec, batch=None) -> torch.Tensor:
        st: MeshPortrait = plan.appearance
        meshes = self.target_meshes(plan, sl)
        textures = self.textures(st, plan.emotion[sl])
        renderer = self._renderer_of(st)
        if st.refiner is None:
            frames = np.stack([renderer.render(m, texture=t) for m, t in zip(meshes, textures)])
        else:   # the learned refiner paints what the warp cannot (mouth interior, lids, seams), from its aux masks
            warped = [renderer.render(m, return_aux=True, texture=t) for m, t in zip(meshes, textures)]
            frames = st.refiner.apply_batch(np.stack([f for f, _ in warped]), [a for _, a in warped])
        return torch.from_numpy(frames).permute(0, 3, 1, 2)   # uint8 (B,3,S,S): the warp's pixels, no round trip

    def _renderer_of(self, st: MeshPortrait) -> WarpRenderer:
        """The renderer this thread draws the portrait's frames with: the portrait's own on the main thread, a
        private copy (made once per portrait and thread, under 1 ms) on any other. The renderer's parts keep
        per-frame caches that two render threads must not share: the eyes' rigid reference (a key and a value set
        one after the other) and the lids' colours of the last texture (checked, then set). The caches are keyed,
        never carried from frame to frame, so a copy draws the frames the shared renderer draws on one thread."""
        if threading.current_thread() is threading.main_thread():
            return st.renderer
        local = self._render_local
        if getattr(local, "portrait", None) is not st:
            local.portrait, local.renderer = st, copy.deepcopy(st.renderer)
        return local.renderer

    def textures(self, st: MeshPortrait, emotion) -> list:
        """Per frame, the portrait's pixels with the frame's expression shading (``emotion_texture.py``: the
        emotion code's last L dims weigh the labels' ratio images), or None where they are all 0."""
        n = len(emotion)
        if st.expression is None or not self.expression_labels:
            return [None] * n
        w = np.asarray(emotion[:, -len(self.expression_labels):], np.float32)
        return [st.expression.texture(w[i]) for i in range(n)]

    def output_size(self, plan) -> int:
        return plan.appearance.size

    default_preset = "veryfast"   # x264: the warp renders in ~6 ms, the medium preset would double the time

    def appearance_panel(self, portrait) -> np.ndarray:
        return portrait.crop

    def to_output_matrix(self, portrait, size: int) -> np.ndarray:
        k = size / 224.0
        return np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5]]) @ np.vstack([portrait.to_crop, [0, 0, 1]])


CALIBRATIONS_KEPT = 8   # portraits whose pose calibration a family keeps (a few kB each, plus the probe closure)


def _portrait_key(st: MeshPortrait) -> bytes:
    """What a portrait's pose calibration depends on: its render image, its mesh and the renderer's options (the
    probes are renders of this image through this renderer, read back by the same detector)."""
    h = hashlib.sha256()
    for a in (st.image, st.mesh):
        a = np.ascontiguousarray(a)
        h.update(repr((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    r = st.renderer
    plain = (bool, int, float, str)
    parts = [(type(p).__name__, sorted((k, v) for k, v in vars(p).items() if isinstance(v, plain))) for p in r.parts]
    h.update(repr((type(r).__name__, r.depth_gain, r._mirror_src_tri is False, parts)).encode())
    return h.digest()


def _turns_head(opt) -> bool:
    """Whether a job's options will turn the head (a pose source or a pose control, at a non-zero intensity): then
    its portrait's pose calibration is probed as soon as the portrait is measured (`prepare_portrait`)."""
    if opt is None or getattr(opt, "pose_intensity", 1.0) == 0:
        return False
    return getattr(opt, "pose", None) not in (None, "still", "off") or getattr(opt, "pose_control", None) is not None


def _pose_change(p: np.ndarray) -> np.ndarray:
    """retarget(base=None) pose -> the plan's pose change (d angles, d centre in face scales, d log-scale)."""
    p = np.asarray(p, np.float64)
    out = p.copy()
    out[:, 3:5] = p[:, 3:5] * np.exp(p[:, 5:6])
    return np.nan_to_num(out).astype(np.float32)
