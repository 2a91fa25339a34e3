"""A live session of the mesh-warp default model: speech samples in, as they arrive; 25 fps frames out.

Shared with the offline ``animate`` (nothing forked): the portrait's encoding (``MeshWarpFamily.encode_portrait``),
the lips (``speech.SpeechStream`` + ``LipsHead`` + ``lips.speech_rules`` + ``smooth_keeping_closures``), the
explicit controls (``MeshWarpFamily.apply_controls``), the pose calibration and the warp (``_targets``,
``WarpRenderer``); generated head motion is ``motion.MotionModel``'s process run one frame at a time, blinks are
``motion.auto_blink_control``'s schedule.

What differs from offline, and why:

- **Lips head and rules** (``rules``, default ``"live"``): the live lips head (``lips.live_from_params``), distilled
  from the offline head (``lips_train distil``: fitted to predict the offline head's codes): Whisper chunks of 2 s,
  one every 2 frames (``hop``), each ending 100 ms after the hop's last frame starts; each of the hop's 2 frames has
  its own linear map from the chunk's last 13 encoder frames (120 ms before the hop's first frame to the chunk's
  end, 140 ms after it); and the live rules (``lips.live_rules``: the 120 ms hangover after the voice, a
  ``vad_lead`` of 2 frames before it, the ramp's half-open frames inside that span's first frame and after its
  last, no smoothing: the maps over overlapping windows are smooth already). ``rules="offline"``: the offline
  head (4 s chunks, -80..+120 ms) and rules exactly, one chunk every ``hop`` frames (default ``DEFAULT_HOP`` = 8):
  the lips of ``animate`` within the chunking's tolerance, for comparison.
- **Look-ahead** (what bounds the delay; ``lookahead_ms``, ``frame_needs``): a frame is final once its hop's chunk
  is encoded (the hop's last frame plus the window's look-ahead) and the voice flags of the frames the rules read
  are known (whole 32 ms silero windows). Live: 140 ms from a frame's first sample for the chunk (hop 2, chunk to
  +100 ms after the hop's last frame), 120 ms (+ silero's window rounding, at most 144 ms) for the flags of 2 frames
  later: 144 ms; offline rules at hop 8: 480 ms.
- **Voice activity**: silero-vad run window by window as the samples come (its own instance, same 512-sample
  windows and state as ``lips.voice_activity``: the same probabilities).
- **Head motion activity**: ``MotionModel``'s innovation scale is driven by the voice activity (``LIVE_ACTIVITY``
  while speaking, else 0; the same 0.4 s mean, but causal) instead of the offline mel loudness, which needs the
  whole track's gain.
- **Expression leak**: the offline per-plan probe of how the mouth/expression read as a turn is not run (it needs
  the whole plan); the pose calibration is.
"""
from __future__ import annotations

import dataclasses
import gc
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..families import Codes
from ..families.meshwarp import speech as sp
from ..families.meshwarp.lips import (
    LIVE_RULES_AHEAD,
    VAD_HANGOVER,
    VAD_LOW,
    VAD_THRESHOLD,
    VOICE_FEATURES,
    causal_hangover,
    live_from_params,
    live_rules,
    live_speaking,
    smooth_keeping_closures,
    speech_rules,
    voice_windows,
)
from ..families.meshwarp.motion import AXES, ENVELOPE_FRAMES, SLOW_RHO, MotionModel, auto_blink_control
from ..options import AnimateOptions, check_options
from ..runtime import Precision
from ..vocabulary import FPS, MESHWARP

# video frames per encoder chunk with the OFFLINE rules (rules="offline"): 8 (320 ms) keeps up at 25 fps on this
# shared 2-core machine (0.6 cores measured with the load average at ~5); the live head's hop is the one it was
# fitted with (its config; 2 = 80 ms: a 2 s chunk costs ~45 ms on one idle thread, ~0.55 of a core)
DEFAULT_HOP = 8
SILERO_WINDOW = 512      # silero-vad's window at 16 kHz (32 ms)
# frames past a frame's own that its final mouth code needs with the offline rules: VAD hangover, + the silence
# ramp, + the smoothing (the live rules: lips.LIVE_RULES_AHEAD)
RULES_AHEAD = VAD_HANGOVER + 2
RULES = ("live", "offline")
MAX_PENDING = 4          # chunks queued for the encoder thread before a push waits for it
# seconds a push waits for the chunk on the encoder thread (a 2 s chunk takes ~45 ms on one idle thread, so it is
# usually done within a 20-40 ms push period): saves the next push's wait, and is no CPU
ENCODE_WAIT = 0.03
BLINK_BLOCK = FPS * 600  # blink schedule made 10 minutes at a time
# the head-motion activity of a speaking frame: the live activity is the voice flag (0/1, with the live rules'
# hangover and lead), the offline one the mel loudness scaled 0..1 between its 20th and 80th percentiles; over the
# training speakers' frames (prepared corpus, held-out people apart) the offline activity averages 0.535 and the
# live flags 0.871 (lead 2): 0.535 / 0.871. Without it the live head moved 30 % more than the held-out speakers in
# roll (benchmarks/live_motion.py)
LIVE_ACTIVITY = 0.61


@dataclass
class LiveFrame:
    index: int                # video frame number (frame f shows the speech [40 f, 40 f + 40) ms)
    image: np.ndarray         # (S,S,3) uint8, the portrait's crop resolution
    mouth: np.ndarray         # (Dm,) the frame's mouth code (after rules, smoothing, intensity and lip control)
    ready: float              # time.perf_counter() when it was rendered
    heard: float              # time.perf_counter() when the frame's first sample had arrived (its oldest speech)
    pose: np.ndarray          # (6,) the frame's pose code change (angles as asked, before the calibration)


@dataclass
class LiveControls:
    """What can change between chunks; None = generated (pose, blinks) or the portrait's own (gaze, emotion)."""

    yaw: float | None = None          # degrees from the portrait's own pose (as --yaw): replaces generated motion
    pitch: float | None = None
    roll: float | None = None
    gaze_h: float | None = None       # as --gaze-h / --gaze-v
    gaze_v: float | None = None
    emotion: str | None = None        # a label of the model (neutral, happy, ...)
    emotion_level: float = 1.0
    lip_level: float = 1.0            # multiplies the mouth motion (0: closed)
    pose_auto: bool = True            # generated head motion where no angle is set
    blink_auto: bool = True           # natural blinks

    def options(self, base: AnimateOptions) -> AnimateOptions:
        """The offline AnimateOptions with these explicit controls (what ``apply_controls`` reads)."""
        from ..controls.explicit import EmotionControl, GazeControl, LipControl, PoseControl
        kw = {}
        angles = {k: v for k, v in (("yaw", self.yaw), ("pitch", self.pitch), ("roll", self.roll)) if v is not None}
        if angles:
            kw["pose_control"] = PoseControl(**angles).validate()
        if self.gaze_h is not None or self.gaze_v is not None:
            kw["gaze_control"] = GazeControl(horizontal=self.gaze_h or 0.0, vertical=self.gaze_v or 0.0).validate()
        if self.emotion:
            kw["emotion_control"] = EmotionControl(label=self.emotion, intensity=float(self.emotion_level)).validate()
        if self.lip_level != 1.0:
            kw["lip_control"] = LipControl(intensity=float(self.lip_level)).validate()
        return dataclasses.replace(base, **kw)


class _HeadMotion:
    """``MotionModel.head_angles`` one frame at a time (the same AR(2) + slow drift + soft limit, its state kept),
    driven by a causal mean of the activity."""

    def __init__(self, model: MotionModel, seed: int):
        self.p = model.params["pose"]
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros((len(AXES), 4))   # x1, x2, y, z per axis
        self.recent: list[float] = []

    def step(self, activity: float) -> np.ndarray:
        self.recent = (self.recent + [float(activity)])[-ENVELOPE_FRAMES:]
        a = float(np.mean(self.recent))
        noise = self.rng.standard_normal((2, len(AXES)))
        out = np.zeros(len(AXES))
        for j, axis in enumerate(AXES):
            q = self.p[axis]
            a1, a2 = q["ar"]
            s = np.sqrt(max(q["v0"] + q["v1"] * a, 1e-8))
            x1, x2, y, z = self.state[j]
            x = a1 * x1 + a2 * x2 + s * noise[0, j]
            z = SLOW_RHO * z + q.get("slow", 0.0) * s * noise[1, j]
            y = SLOW_RHO * y + (1 - SLOW_RHO) * z
            out[j] = q["limit"] * np.tanh((x + y) / q["limit"])
            self.state[j] = (x, x1, y, z)
        return out


class LiveSession:
    """``push(samples)`` -> the frames that became final; ``finish()`` -> the rest; ``close()`` frees everything.

    portrait: a path, an RGB array or a pipeline ``Portrait``; sample_rate: of the pushed samples (resampled to
    16 kHz with soxr's stream when it differs); pipeline: a ``TalkingHeadPipeline`` of the mesh-warp model (the
    default weights when None; one can be shared by several sessions)."""

    def __init__(self, portrait, controls: LiveControls | None = None, *, pipeline=None, sample_rate: int = 16000,
                 hop: int | None = None, seed: int = 0, options: AnimateOptions | None = None,
                 max_delay: float | None = None, rules: str = "live", threaded: bool = True):
        if pipeline is None:
            from ..pipeline import TalkingHeadPipeline
            pipeline = TalkingHeadPipeline.from_default(device="cpu", threads=1)
        fam = pipeline.family
        if fam.name != MESHWARP:
            raise InputError(f"live sessions run the mesh-warp model, not {fam.name}")
        fam._need_lips()
        self.fam, self.pipeline = fam, pipeline
        self.base = options or AnimateOptions(progress=False)
        check_options(self.base)  # the one validation, as offline (the stream is the audio: no length known)
        self.prec = Precision(self.base.precision, torch.device("cpu"))
        self.portrait = portrait if not isinstance(portrait, (str, np.ndarray)) and hasattr(portrait, "crop") \
            else pipeline.load_portrait(portrait, self.base.align)
        self.state, self.still = fam.encode_portrait(self.portrait, self.prec, self.base)   # InputError: no face
        self.state.pose_calibration = fam.calibrate_pose(self.state) if self.state.calibrate else None
        if rules not in RULES:
            raise InputError(f"live session: rules {rules!r}: one of {', '.join(RULES)}")
        lips = fam.model.lips
        live_head = live_from_params(fam.params) if rules == "live" else None
        # a parameters file without a live head (older, or fitted elsewhere) runs the offline head and rules
        self.rules = "live" if live_head is not None else "offline"
        self.head = live_head if live_head is not None else lips.head
        if hop is None:
            hop = int(fam.params.audio_config["live"]["hop"]) if live_head is not None else DEFAULT_HOP
        self.stream = self.head.stream(lips.encoder, hop=hop)
        # the live rules' lead (frames the mouth opens before the voice) travels with the live head (its config)
        self.rules_ahead = getattr(self.head, "vad_lead", LIVE_RULES_AHEAD) if self.rules == "live" else RULES_AHEAD
        # threaded: the Whisper encoder runs on a worker thread (the second core; torch releases the GIL), so that
        # rendering goes on while a chunk is encoded; a frame whose chunk is being encoded comes out at a later push
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pdfgc-live-encoder") if threaded else None
        self._pending: deque = deque()
        from silero_vad import load_silero_vad
        self.vad = load_silero_vad()   # its own instance: the state is this session's
        self.vad.reset_states()
        self.resampler = None
        if int(sample_rate) != sp.SAMPLE_RATE:
            import soxr
            self.resampler = soxr.ResampleStream(int(sample_rate), sp.SAMPLE_RATE, 1, dtype="float32")
        self.gap = (self.head.gap_direction.numpy(), float(self.head.gap_rms))
        # voice over music (lips.VoiceFeatures, offline head's): silero's VAD_LOW counts where the classifier hears a
        # voice, as offline; it reads this head's projected windows (same projection required), so its flags are
        # known with the codes: the rules' lead frames past the codes read silero alone
        off = lips.head
        self.voice_model = getattr(off, "voice", None) if all(
            torch.equal(getattr(off, k), getattr(self.head, k)) for k in ("mean", "scale", "proj")) else None
        self.mouth_gain = fam.intensity("mouth")
        self.motion = _HeadMotion(MotionModel.load(), seed)
        self.seed = seed
        self.blink_curve, self.blink_from = np.ones(0), 0   # block number
        self.controls = controls or LiveControls()
        self.opt = self.controls.options(self.base)
        fam.preflight_controls(self.opt)
        # rolling state: raw codes and per-frame raw voice flags from frame `self.hist0` on
        self.hist0 = 0
        self.raw = np.zeros((0, self.head.bias.shape[0]), np.float32)
        self.voice_raw = np.zeros(0, bool)
        self.voice_low = np.zeros(0, bool)    # silero >= VAD_LOW
        self.voice_feat = np.zeros(0, bool)   # the classifier >= VOICE_FEATURES (as far as codes are known)
        self.vad_pending = np.zeros(0, np.float32)
        self.vad_windows = 0
        self.emitted = 0
        self.received = 0
        self.arrivals: list[tuple[int, float]] = []   # (sample count, perf_counter) of each push
        # a frame whose oldest speech arrived more than max_delay seconds ago when its turn to render comes is
        # dropped (not rendered, counted in `dropped`): a session that fell behind catches up instead of lagging
        self.max_delay, self.dropped = max_delay, 0
        self.closed = False

    # ---- controls ------------------------------------------------------------------------------------------------
    def set_controls(self, **changes) -> None:
        """Change controls (``LiveControls`` fields); they apply from the next chunk of frames on."""
        new = dataclasses.replace(self.controls, **changes)
        opt = new.options(self.base)
        self.fam.preflight_controls(opt)   # an unknown emotion label fails here, before anything changes
        self.controls, self.opt = new, opt

    # ---- input ---------------------------------------------------------------------------------------------------
    def push(self, samples) -> list[LiveFrame]:
        if self.closed:
            raise InputError("live session: closed")
        try:
            x = np.asarray(samples, np.float32)
        except (TypeError, ValueError):
            raise InputError(f"live session: audio samples must be numbers, not {type(samples).__name__}") from None
        if x.ndim > 1:
            raise InputError(f"live session: audio samples must be mono, one value per sample (got shape {x.shape})")
        x = x.reshape(-1)
        if x.size and not np.isfinite(x).all():
            raise InputError("live session: the audio has NaN or infinite samples")
        if x.size and np.abs(x).max() > 64.0:
            raise InputError(f"live session: audio samples must be floats in -1..1 (peak {np.abs(x).max():.0f}: "
                             "int16 PCM? divide by 32768)")
        if self.resampler is not None:
            x = self.resampler.resample_chunk(x, last=False)
        self.received += x.size
        self.arrivals.append((self.received, time.perf_counter()))
        # a long push is taken one hop at a time, rendering between chunks: its first frames are not held (and
        # dropped as late) while the chunks of its last ones are encoded
        out, step = [], self.stream.hop * sp.VIDEO_SAMPLES
        for i in range(0, max(x.size, 1), step):
            self._voice(x[i:i + step])
            self._submit(self.stream.push_cut(x[i:i + step]))
            self._collect(wait=False)
            out += self._emit(final=False)
        if self._pending and ENCODE_WAIT > 0:   # the chunk being encoded: its frames now rather than a push later
            wait([self._pending[0]], timeout=ENCODE_WAIT)
            self._collect(wait=False)
            out += self._emit(final=False)
        return out

    def finish(self) -> list[LiveFrame]:
        """The frames the samples so far cover (zeros after them, as offline)."""
        if self.resampler is not None:
            x = self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self.received += x.size
            self._voice(x)
            self._submit(self.stream.push_cut(x))
        total = -(-self.received // sp.VIDEO_SAMPLES)
        self.stream.num_frames = total
        self._submit(self.stream.finish_cut())
        self._collect(wait=True)
        pad = (-self.vad_pending.size) % SILERO_WINDOW
        if self.vad_pending.size:
            self._voice(np.zeros(pad, np.float32))
        self.total = total
        return self._emit(final=True)

    def _voice(self, x: np.ndarray) -> None:
        """silero-vad window by window (as lips.voice_activity): per-frame raw flags of the frames fully heard."""
        buf = np.concatenate([self.vad_pending, x])
        n = (buf.size // SILERO_WINDOW) * SILERO_WINDOW
        probs = []
        if n:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.no_grad():
                    w = torch.from_numpy(buf[:n].copy())
                    probs = [float(self.vad(w[i:i + SILERO_WINDOW][None], sp.SAMPLE_RATE))
                             for i in range(0, n, SILERO_WINDOW)]
            finally:
                torch.set_num_threads(threads)
        self.vad_pending = buf[n:]
        for p in probs:   # window i covers samples [512 i, 512 (i+1)): marks the frames it overlaps
            i = self.vad_windows
            self.vad_windows += 1
            a, b = (SILERO_WINDOW * i) // sp.VIDEO_SAMPLES, (SILERO_WINDOW * (i + 1) - 1) // sp.VIDEO_SAMPLES
            need = b + 1 - self.hist0
            if need > self.voice_raw.size:
                self.voice_raw = np.concatenate([self.voice_raw, np.zeros(need - self.voice_raw.size, bool)])
                self.voice_low = np.concatenate([self.voice_low, np.zeros(need - self.voice_low.size, bool)])
            if p >= VAD_THRESHOLD:
                self.voice_raw[max(a - self.hist0, 0):b + 1 - self.hist0] = True
            if p >= VAD_LOW:
                self.voice_low[max(a - self.hist0, 0):b + 1 - self.hist0] = True

    def _voice_known(self) -> int:
        """Frames whose raw voice flag is final (every window overlapping them is heard)."""
        return (SILERO_WINDOW * self.vad_windows) // sp.VIDEO_SAMPLES

    @torch.no_grad()
    def _encode(self, cut) -> tuple[int, np.ndarray, np.ndarray | None]:
        """One chunk's Whisper states and the lips head: (first frame, raw codes of its hop's frames, their
        classifier voice flags or None)."""
        first, slab = self.stream.encode(cut)
        z = self.head.project(torch.from_numpy(slab))
        y = self.head.decode(z, self.stream.hop).numpy()
        win = voice_windows(self.head, z, self.stream.hop) if self.voice_model is not None else None
        return first, y, (self.voice_model(win).numpy() >= VOICE_FEATURES) if win is not None else None

    def _submit(self, cuts) -> None:
        for cut in cuts:
            if self._pool is None:
                self._codes(self._encode(cut))
            else:
                self._pending.append(self._pool.submit(self._encode, cut))
        while len(self._pending) > MAX_PENDING:   # the encoder fell behind: wait rather than queue without bound
            self._codes(self._pending.popleft().result())

    def _collect(self, wait: bool) -> None:
        """The encoded chunks, in order (``wait``: all of them; else the ones done by now)."""
        while self._pending and (wait or self._pending[0].done()):
            self._codes(self._pending.popleft().result())

    def _codes(self, item) -> None:
        first, y, feat = item
        k = max(0, first + len(y) - self.hist0 - len(self.raw))
        self.raw = np.concatenate([self.raw, y[:k]])
        if feat is not None:
            self.voice_feat = np.concatenate([self.voice_feat, feat[:k]])

    # ---- output --------------------------------------------------------------------------------------------------
    def _emit(self, final: bool) -> list[LiveFrame]:
        codes_known = self.hist0 + len(self.raw)
        if final:
            upto = min(self.total, codes_known)
            voice_to = upto
        elif self.rules == "live":   # codes are per frame; the rules read flags up to f + LIVE_RULES_AHEAD
            voice_to = self._voice_known()
            upto = min(codes_known, voice_to - self.rules_ahead)
        else:
            voice_to = self._voice_known()
            # frame f's smoothing reads f + 1, whose silence ramp reads f + 2's voice (the rules' look-ahead)
            upto = min(codes_known - 2, voice_to - RULES_AHEAD)
        if upto <= self.emitted:
            return []
        hi = min(codes_known, voice_to if not final else upto)
        lo = self.hist0
        # the voice flags as far as they are known: the rules of the last frames read flags past the last code (the
        # live lead, the offline hangover and ramp); cut at the codes, the last frames read no voice there
        raw_voice = np.zeros(max(voice_to, hi) - lo, bool)
        have = self.voice_raw[:raw_voice.size]
        raw_voice[:have.size] = have
        # voice over music (none without a classifier): silero >= VAD_LOW and the classifier's flag, known as far as
        # the codes; they open their own frame and the hangover after it (no lead: a frame's rules read them only up
        # to itself, known whenever it is emitted, however the speech is cut)
        extra = self.voice_low[:self.voice_feat.size] & self.voice_feat[:self.voice_low.size]
        # the rules on the rolling segment (it starts at frame 0 or far enough back to match a whole-file run)
        if self.rules == "live":
            speaking = live_speaking(raw_voice, self.rules_ahead, extra)[:hi - lo]
            mouth = live_rules(self.raw[:hi - lo], raw_voice, *self.gap, lead=self.rules_ahead,
                               extra=extra) * self.mouth_gain
        else:
            k = np.ones(2 * VAD_HANGOVER + 1)
            speaking = np.convolve(raw_voice.astype(float), k)[VAD_HANGOVER:VAD_HANGOVER + raw_voice.size] > 0
            speaking = (speaking | causal_hangover(extra, speaking.size))[:hi - lo]
            y = speech_rules(self.raw[:hi - lo], speaking, *self.gap)
            mouth = smooth_keeping_closures(torch.from_numpy(y)).numpy() * self.mouth_gain
        frames = self._render(mouth[self.emitted - lo:upto - lo], self.emitted, voice=speaking)
        self.emitted = upto
        self._trim()
        return frames

    def _trim(self) -> None:
        """Keep the last RULES_AHEAD + 6 frames of history before the next frame to emit (flat memory)."""
        keep_from = max(0, self.emitted - (RULES_AHEAD + 6))
        cut = keep_from - self.hist0
        if cut > 0:
            self.raw, self.voice_raw = self.raw[cut:], self.voice_raw[cut:]
            self.voice_low, self.voice_feat = self.voice_low[cut:], self.voice_feat[cut:]
            self.hist0 = keep_from

    def _blinks(self, first: int, n: int) -> np.ndarray:
        """Openness of frames [first, first + n): the natural-rate schedule, made BLINK_BLOCK frames at a time."""
        out = np.ones(n)
        for j in range(n):
            b, i = divmod(first + j, BLINK_BLOCK)
            if b != self.blink_from:
                self.blink_curve, self.blink_from = np.ones(0), b
            if not self.blink_curve.size:
                self.blink_curve = auto_blink_control(self.seed + b).openness_curve(BLINK_BLOCK)
            out[j] = self.blink_curve[i]
        return out

    def _render(self, mouth: np.ndarray, first: int, voice: np.ndarray) -> list[LiveFrame]:
        n = len(mouth)
        if n == 0:
            return []
        fam, st, c = self.fam, self.state, self.controls
        dims = fam.code_dims
        pose = torch.zeros(n, dims["pose"])
        if c.pose_auto:
            act = LIVE_ACTIVITY * voice[first - self.hist0:first - self.hist0 + n].astype(float)
            pose[:, :3] = torch.from_numpy(np.stack([self.motion.step(a) for a in act])).float()
            for j, v in enumerate((c.yaw, c.pitch, c.roll)):
                if v is not None:   # a set angle replaces the generated motion on its axis (the process runs on)
                    pose[:, j] = 0.0
        pose = pose * self.base.pose_intensity
        eye = torch.zeros(n, dims["eye"])
        if c.blink_auto:
            o = self._blinks(first, n)
            eye[:, 0] = eye[:, 1] = torch.from_numpy(np.asarray(o, np.float64) - 1.0).float()
        codes = Codes(mouth=torch.from_numpy(np.ascontiguousarray(mouth)).float(),
                      emotion=torch.zeros(n, dims["emotion"]), eye=eye, pose=pose)
        codes = fam.apply_controls(self.opt, n, codes, st, self.still, self.prec)
        angles = codes.pose[:, :3].double().numpy()
        if st.pose_calibration is not None and np.any(angles):
            angles = st.pose_calibration.invert(angles)
        p = np.concatenate([angles, codes.pose[:, 3:].double().numpy()], 1)
        meshes = fam._targets(st, p, codes.eye.double().numpy(), codes.mouth.numpy(), codes.emotion.numpy())
        heard = [self._arrival((first + j) * sp.VIDEO_SAMPLES) for j in range(n)]
        out = []
        for j, m in enumerate(meshes):
            if self.max_delay is not None and time.perf_counter() - heard[j] > self.max_delay:
                self.dropped += 1
                continue
            skin = fam.textures(st, codes.emotion[j:j + 1].numpy())[0]   # the label's expression shading
            out.append(LiveFrame(first + j, st.renderer.render(m, texture=skin), codes.mouth[j].numpy().copy(),
                                 time.perf_counter(), heard[j], codes.pose[j].numpy().copy()))
        # arrivals older than the next frame's first sample are no longer needed (flat memory)
        next_sample = (first + n) * sp.VIDEO_SAMPLES
        while len(self.arrivals) > 1 and self.arrivals[0][0] <= next_sample:
            self.arrivals.pop(0)
        return out

    # ---- timing and lifetime -----------------------------------------------------------------------------------
    def frame_needs(self, f: int) -> int:
        """16 kHz samples the session must have received before frame ``f`` is final (and rendered by ``push``):
        its chunk's end (the last frame of its hop plus the window's look-ahead) and the voice flags of the
        ``rules_ahead`` frames after it (whole silero windows)."""
        hop = self.stream.hop
        g = f if self.rules == "live" else f + 2   # offline: the smoothing's next frame, whose ramp reads the next
        last = (g // hop) * hop + hop - 1
        chunk = last * sp.VIDEO_SAMPLES + self.stream.ahead_samples
        flags = (f + self.rules_ahead + 1) * sp.VIDEO_SAMPLES
        return max(chunk, -(-flags // SILERO_WINDOW) * SILERO_WINDOW)

    @property
    def lookahead_ms(self) -> float:
        """The stated delay before compute: the most speech past a frame's FIRST sample that the frame waits for
        (over a whole period of the hop and the silero windows)."""
        period = self.stream.hop * 16   # 16 frames = 10 silero windows
        return 1000.0 * max(self.frame_needs(f) - f * sp.VIDEO_SAMPLES for f in range(period, 2 * period)) \
            / sp.SAMPLE_RATE

    def _arrival(self, sample: int) -> float:
        """perf_counter() when the 16 kHz sample number ``sample`` had arrived (zeros past the end: the last push)."""
        for count, t in self.arrivals:
            if count > sample:
                return t
        return self.arrivals[-1][1]

    def close(self) -> None:
        """Free the session's buffers, models' state and the portrait (the shared pipeline stays)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._pending = None, deque()
        for name in ("stream", "vad", "state", "still", "portrait", "raw", "voice_raw", "voice_low", "voice_feat",
                     "vad_pending", "arrivals",
                     "blink_curve", "motion", "resampler", "head", "voice_model"):
            setattr(self, name, None)
        self.closed = True
        gc.collect()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["LiveSession", "LiveControls", "LiveFrame", "DEFAULT_HOP"]
