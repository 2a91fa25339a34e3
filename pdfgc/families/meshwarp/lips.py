"""Lips from speech: Whisper base's lower encoder blocks (``speech.py``) -> a small linear head -> the mesh-warp
mouth code (T,Dm), then the speech-aware rules.

``LipsHead``: the chosen blocks' hidden states of every encoder frame, standardised and projected on their
principal axes (PCA of the training frames), then one linear map from a video frame's window of ``speech.WINDOW``
encoder frames (80 ms before to 120 ms after the frame) to the mouth code, fitted by ridge regression
(``lips_train.py``), times an amplitude gain that undoes the ridge's regression to the mean. The code is relative
to the closed neutral mouth (0 = closed), in canonical units, at the training people's median articulation.

Rules (``speech_rules``): frames where no voice is heard (with ``VAD_HANGOVER`` frames of margin) close the mouth,
through a 2-frame ramp; a voice is heard where silero-vad's probability reaches ``VAD_THRESHOLD``, or reaches only
``VAD_LOW`` while the head's own Whisper features read a voice (``VoiceFeatures``, probability >= ``VOICE_FEATURES``:
sung or lip-synced voice over music, which silero mostly misses); a predicted lip gap below ``CLOSED_GAP`` of the
code's scale counts as a closure and is pulled to closed, so bilabials (p/b/m) shut the lips.
``smooth_keeping_closures``: the official 3-tap Gaussian, except on closure frames, which keep their closed value.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...errors import CheckpointError
from ...official_rules import smooth_mouth
from . import speech as sp

VAD_THRESHOLD = 0.5        # silero-vad's default speech probability threshold
VAD_HANGOVER = 3           # frames (120 ms) of speech margin each side: the lips part before the sound starts
CLOSED_GAP = 0.15          # predicted lip gap (fraction of the speakers' median gap RMS) read as a closure
# voice over music (issue 24; benchmarks/results/meshwarp/lips_music_s32.md, chosen on the training people): where the
# Whisper-feature classifier reads a voice, silero's probability need only reach VAD_LOW
VAD_LOW = 0.1
VOICE_FEATURES = 0.65      # the Whisper-feature classifier's probability that counts as "a voice here"
VAD = "vad."               # prefix of the Whisper-feature voice classifier's tensors among the ``audio.*`` ones


class LipsHead(nn.Module):
    def __init__(self, layers=(2, 3, 4), components: int = 64, mouth_dim: int = 16, dim: int = 512,
                 window: sp.SpeechWindow = sp.OFFLINE_WINDOW, phases: int = 0):
        super().__init__()
        self.layers = [int(x) for x in layers]
        self.window = window   # the chunk length and frame window it was fitted on (and must be run with)
        # phases (live heads only): 0 = one map from each frame's own window (every head before); h = a stream of hop
        # h whose chunk's h frames each have their own map from the WHOLE slab (all its frames read the chunk's
        # 2 (h - 1) + window.frames encoder frames): the hop's first frames read further ahead at no extra wait
        self.phases = int(phases)
        n = len(self.layers) * dim
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))
        self.register_buffer("proj", torch.zeros(n, components))
        if self.phases:
            self.register_buffer("weight", torch.zeros(self.phases, self.slab_frames * components, mouth_dim))
            self.register_buffer("phase_bias", torch.zeros(self.phases, mouth_dim))   # each map's own intercept
        else:
            self.register_buffer("weight", torch.zeros(window.frames * components, mouth_dim))
        self.register_buffer("bias", torch.zeros(mouth_dim))
        self.register_buffer("gain", torch.ones(()))
        # (Dm,) how each code moves the inner-lip gap, and the gap's RMS in speech at the target scale: the rules'
        # closure threshold is relative to it
        self.register_buffer("gap_direction", torch.zeros(mouth_dim))
        self.register_buffer("gap_rms", torch.ones(()))

    @property
    def slab_frames(self) -> int:
        """Encoder frames of one chunk's slab in a stream of hop ``phases`` (the phase head reads them all)."""
        return sp.ENC_PER_VIDEO * (self.phases - 1) + self.window.frames

    @property
    def config(self) -> dict:
        return {"layers": self.layers, "components": int(self.proj.shape[1]), "mouth_dim": int(self.bias.shape[0])}

    def stream(self, encoder: sp.WhisperEncoder, num_frames: int | None = None, hop: int = sp.HOP_VIDEO,
               history: np.ndarray | None = None) -> sp.SpeechStream:
        """A speech stream cut the way this head was fitted (its chunk length and window)."""
        return sp.SpeechStream(encoder, self.layers, num_frames, hop, self.window, history)

    def project(self, slab: torch.Tensor) -> torch.Tensor:
        """(..., E, L, 512) encoder frames -> (..., E, components)."""
        x = slab.flatten(-2).float()
        return ((x - self.mean) / self.scale) @ self.proj

    def forward(self, slab: torch.Tensor, count: int = sp.HOP_VIDEO) -> torch.Tensor:
        """(SLAB, L, 512) one chunk's slab -> (count, Dm) mouth codes of its frames (no rules); ``count``: the
        stream's hop (a live stream's slab is shorter)."""
        return self.decode(self.project(slab), count)

    def windows(self, z: torch.Tensor, count: int = sp.HOP_VIDEO) -> torch.Tensor:
        """(E, components) projected slab -> (count, window.frames * components): each frame's window."""
        idx = torch.arange(count)[:, None] * sp.ENC_PER_VIDEO + torch.arange(self.window.frames)[None]
        return z[idx].flatten(1)

    def decode(self, z: torch.Tensor, count: int = sp.HOP_VIDEO) -> torch.Tensor:
        """(E, components) projected slab -> (count, Dm) mouth codes (``forward`` after ``project``)."""
        if self.phases:
            if z.shape[0] != self.slab_frames or count > self.phases:
                raise ValueError(f"a phase head of hop {self.phases} reads slabs of {self.slab_frames} encoder frames "
                                 f"and at most {self.phases} frames (got {z.shape[0]}, {count})")
            y = torch.einsum("k,jkd->jd", z.flatten(), self.weight[:count])
            return y * self.gain + self.bias + self.phase_bias[:count]
        return (self.windows(z, count) @ self.weight) * self.gain + self.bias   # the gain scales motion, not the rest


def build(config: dict) -> LipsHead:
    return LipsHead(config["layers"], int(config["components"]), int(config["mouth_dim"]))


def from_state(config: dict, state: dict) -> LipsHead:
    head = build(config)
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"meshwarp parameters: lips head does not match its config ({e})") from None
    return head.eval()


KIND = "whisper-base-lips"   # params.audio_config["kind"] of a lips head (an older file holds a mel network)


LIVE = "live."   # prefix of the live head's tensors among the ``audio.*`` ones; its config is audio_config["live"]


def from_params(params) -> LipsHead:
    """The lips head stored in ``MeshParams`` (``audio.*`` tensors, ``audio`` config; ``CheckpointError`` if it has
    none or another kind)."""
    cfg = params.audio_config or {}
    if not params.audio_state or cfg.get("kind") != KIND:
        raise CheckpointError("meshwarp parameters: no lips head in this file (an older file's mel network is no "
                              "longer read; fit one with `python -m pdfgc.families.meshwarp.lips_train`)")
    if cfg.get("speech") != sp.speech_config():
        raise CheckpointError(f"meshwarp parameters: the lips head was fitted on another speech windowing "
                              f"({cfg.get('speech')}; this pdfgc uses {sp.speech_config()})")
    head = from_state(cfg, {k: v for k, v in params.audio_state.items() if not k.startswith((LIVE, VAD))})
    head.voice = VoiceFeatures.from_params(params, head)   # a submodule: its tensors are the head's ``voice.*``
    head.voice_config = dict(cfg.get("vad") or {})
    return head


def voice_windows(head: LipsHead, z: torch.Tensor, count: int) -> torch.Tensor | None:
    """(count, speech.WINDOW * components): each frame's window of the classifier's width from a head's projected
    slab, as near the offline window (80 ms before .. 120 ms after the frame) as the head's window allows (the live
    head's reads 120 ms before .. 100 ms after: its part from 100 ms before); None if the head's window is narrower."""
    extra = head.window.frames - sp.WINDOW
    if extra < 0:
        return None
    off = min(max(head.window.win_before - sp.WIN_BEFORE, 0), extra)
    idx = torch.arange(count)[:, None] * sp.ENC_PER_VIDEO + off + torch.arange(sp.WINDOW)[None]
    return z[idx].flatten(1)


class VoiceFeatures(nn.Module):
    """Does a frame hold a voice, read from the lips head's own projected Whisper window (``LipsHead.windows``):
    a logistic regression fitted on the training people's clips with silero-vad's decisions as labels
    (``lips_train.fit_voice_classifier``, with every head ``lips_train fit`` / ``pdfgc train --config meshwarp``
    fits; the shipped one by ``benchmarks/meshwarp_lips_gates.py fit-vad``, the same fit). It hears sung and
    lip-synced voice over music that silero misses, and hears harmonic music without a voice too: the rules use it
    only together with silero's low probability (``VAD_LOW``). Tied to the head's projection: it is stored with the
    head (``audio.vad.*``, config ``audio.vad``) and refitted with it; a file without one runs silero alone."""

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(size))
        self.register_buffer("bias", torch.zeros(()))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(T, window.frames * components) -> (T,) probability of a voice."""
        return torch.sigmoid(windows.float() @ self.weight + self.bias)

    @staticmethod
    def from_params(params, head: LipsHead) -> VoiceFeatures | None:
        state = {k[len(VAD):]: v for k, v in (params.audio_state or {}).items() if k.startswith(VAD)}
        if not state:
            return None
        vf = VoiceFeatures(head.window.frames * int(head.proj.shape[1]))
        try:
            vf.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"meshwarp parameters: the voice classifier does not match the lips head ({e})") \
                from None
        return vf.eval()


def live_from_params(params) -> LipsHead | None:
    """The live lips head (``audio.live.*`` tensors, ``audio_config["live"]``: a short window ending near the frame,
    fitted by ``lips_train fit-live``), or None when the file has none."""
    cfg = (params.audio_config or {}).get("live")
    if not cfg or not params.audio_state:
        return None
    speech = dict(cfg.get("speech") or {})
    if speech.pop("model_sha256", None) != sp.MODEL_SHA256:
        raise CheckpointError("meshwarp parameters: the live lips head was fitted on another speech encoder")
    window = sp.SpeechWindow(**{k: int(speech[k]) for k in ("chunk_frames", "win_before", "win_after")})
    head = LipsHead(cfg["layers"], int(cfg["components"]), int(cfg["mouth_dim"]), window=window,
                    phases=int(cfg.get("phases", 0)))
    head.vad_lead = int(cfg.get("vad_lead", LIVE_VAD_LEAD))
    state = {k[len(LIVE):]: v for k, v in params.audio_state.items() if k.startswith(LIVE)}
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"meshwarp parameters: live lips head does not match its config ({e})") from None
    return head.eval()


def to_config(head: LipsHead) -> dict:
    return {"kind": KIND, **head.config, "speech": sp.speech_config()}


def to_live_config(head: LipsHead, hop: int) -> dict:
    """The live head's config: its window, hop, phase maps and the frames its rules open the mouth before the voice
    (``vad_lead``: the rules' look-ahead, so it travels with the head)."""
    if head.phases and head.phases != hop:
        raise ValueError(f"a phase head of {head.phases} phases runs at hop {head.phases}, not {hop}")
    return {**head.config, "speech": head.window.config(), "hop": int(hop), "phases": head.phases,
            "vad_lead": int(getattr(head, "vad_lead", LIVE_VAD_LEAD))}


class SpeechToMouth:
    """Whisper's lower blocks + the lips head, fed through ``speech.SpeechStream`` (offline: the whole signal)."""

    def __init__(self, head: LipsHead, encoder: sp.WhisperEncoder | None = None):
        self.head = head
        self.encoder = encoder if encoder is not None else sp.load_encoder(max(head.layers))

    def stream(self, num_frames: int | None = None) -> sp.SpeechStream:
        return sp.SpeechStream(self.encoder, self.head.layers, num_frames)

    @torch.no_grad()
    def raw_codes(self, wav16k: np.ndarray, num_frames: int) -> np.ndarray:
        """(num_frames, Dm) float32 head output, before the rules."""
        return self.raw_codes_and_voice(wav16k, num_frames)[0]

    @torch.no_grad()
    def raw_codes_and_voice(self, wav16k: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(num_frames, Dm) float32 head output before the rules, and (num_frames,) the Whisper-feature voice
        probability (``VoiceFeatures``; None when the head has no classifier)."""
        s = self.stream(num_frames)
        voice = getattr(self.head, "voice", None)
        out = np.zeros((max(num_frames, 0), self.head.bias.shape[0]), np.float32)
        prob = np.zeros(max(num_frames, 0), np.float32) if voice is not None else None
        for first, slab in s.push(wav16k) + s.finish():
            z = self.head.project(torch.from_numpy(slab))
            y = self.head.decode(z).numpy()
            n = min(sp.HOP_VIDEO, num_frames - first)
            out[first:first + n] = y[:n]
            if voice is not None:
                prob[first:first + n] = voice(self.head.windows(z)).numpy()[:n]
        return out, prob

    def codes(self, wav16k: np.ndarray, num_frames: int, vad: bool = True, threads: int = 1) -> np.ndarray:
        """Mouth codes with the rules. ``threads``: torch intra-op threads meanwhile (1: the pipeline runs this
        beside the face mesh on the other core; 2 threads on a busy 2-core machine measured 2-5x slower)."""
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            y, voiced = self.raw_codes_and_voice(wav16k, num_frames)
        finally:
            torch.set_num_threads(before)
        speaking = voice_activity(wav16k, num_frames, voiced) if vad else np.ones(num_frames, bool)
        return speech_rules(y, speaking, self.head.gap_direction.numpy(), float(self.head.gap_rms))


# ---------------------------------------------------------------------------------------------- rules

_VAD = None


def _silero():
    global _VAD
    if _VAD is None:
        try:
            from silero_vad import load_silero_vad
        except ImportError:
            raise CheckpointError("lips from speech need silero-vad (pip install silero-vad==6.2.3; "
                                  "scripts/install.sh)") from None
        _VAD = load_silero_vad()
    return _VAD


@torch.no_grad()
def voice_probs(wav16k: np.ndarray) -> np.ndarray:
    """silero-vad's speech probability of every 32 ms (512-sample) window of the signal."""
    model = _silero()
    model.reset_states()
    n = 512   # silero's window at 16 kHz
    wav = np.asarray(wav16k, np.float32)
    pad = (-len(wav)) % n
    x = torch.from_numpy(np.concatenate([wav, np.zeros(pad, np.float32)]))
    # one 32 ms window per call: intra-op threads only add overhead (2 threads measured 4x slower than 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # TorchScript's profiling executor would spend its first calls profiling and optimising the graph (~0.05-0.1 s
        # of CPU a job, the same probabilities after): the plain interpreter is as fast for 32 ms windows
        with torch.jit.optimized_execution(False):
            probs = np.array([float(model(x[i:i + n][None], sp.SAMPLE_RATE)) for i in range(0, len(x), n)])
    finally:
        torch.set_num_threads(threads)
    return probs


def frames_of_windows(speech_at: np.ndarray, num_frames: int) -> np.ndarray:
    """Per 512-sample window flags -> (num_frames,) bool: any of the frame's windows."""
    # window i covers samples [512 i, 512 (i+1)); frame f covers [640 f, 640 (f+1))
    n = 512
    out = np.zeros(num_frames, bool)
    for i in np.flatnonzero(speech_at):
        a, b = (n * i) // sp.VIDEO_SAMPLES, (n * (i + 1) - 1) // sp.VIDEO_SAMPLES
        out[max(a, 0):min(b + 1, num_frames)] = True
    return out


def voice_flags(wav16k: np.ndarray, num_frames: int, voiced: np.ndarray | None = None) -> np.ndarray:
    """(num_frames,) bool, no margin: silero-vad's speech probability >= VAD_THRESHOLD on any of the frame's 32 ms
    windows; with ``voiced`` (the Whisper-feature voice probability per frame), also frames where silero reaches
    VAD_LOW and ``voiced`` >= VOICE_FEATURES (voice over music)."""
    probs = voice_probs(wav16k)
    out = frames_of_windows(probs >= VAD_THRESHOLD, num_frames)
    if voiced is not None:
        out |= frames_of_windows(probs >= VAD_LOW, num_frames) & (np.asarray(voiced)[:num_frames] >= VOICE_FEATURES)
    return out


def voice_activity(wav16k: np.ndarray, num_frames: int, voiced: np.ndarray | None = None) -> np.ndarray:
    """(num_frames,) bool: ``voice_flags`` widened by VAD_HANGOVER frames each side (the offline rules)."""
    out = voice_flags(wav16k, num_frames, voiced)
    if VAD_HANGOVER and out.any():
        k = np.ones(2 * VAD_HANGOVER + 1)
        out = np.convolve(out.astype(float), k, mode="same") > 0
    return out


def speech_rules(codes: np.ndarray, speaking: np.ndarray, gap_direction: np.ndarray, gap_rms: float) -> np.ndarray:
    """Closed mouth outside speech (2-frame ramps) and at predicted closures (see the module doc)."""
    y = np.asarray(codes, np.float32).copy()
    w = speaking.astype(np.float32)
    if len(w) > 2:   # a ramp of 2 frames into and out of silence
        w = np.maximum(w, 0.5 * (np.r_[w[1:], 0] + np.r_[0, w[:-1]]) * (w < 1))
    gap = y @ gap_direction
    closure = gap < CLOSED_GAP * gap_rms
    y[closure] = 0.0
    return y * w[:, None]


def smooth_keeping_closures(codes: torch.Tensor) -> torch.Tensor:
    """The official 3-tap Gaussian (``official_rules.smooth_mouth``), except at frames whose code is exactly the
    closed mouth: those stay closed (a 1-2 frame bilabial closure would otherwise be filled in to ~40 %)."""
    out = smooth_mouth(codes)
    closed = codes.abs().amax(1) == 0 if codes.numel() else torch.zeros(0, dtype=torch.bool)
    out[closed] = 0
    return out


# ---------------------------------------------------------------------------------------------- live rules
# The offline rules look 5 frames past a frame (VAD_HANGOVER 3, the ramp 1, the smoothing 1). The live rules keep
# the 120 ms hangover AFTER the voice (causal: free) but open the mouth only LIVE_VAD_LEAD frames before it, put the
# 2-frame ramp's half-open frames where they need no look-ahead (the first speaking frame, i.e. the lead frame, and
# the first frame after the hangover) and drop the 3-tap smoothing (the ridge over overlapping windows is smooth
# already): a frame's mouth is final once the voice flags of LIVE_RULES_AHEAD frames after it are known. A live head
# carries its own lead (``vad_lead`` of its config; LIVE_VAD_LEAD for heads without one): the distilled head's is 2
# (lips_train.DISTIL_LEAD), which brings the live lips closer to the offline ones for 24 ms more look-ahead.
LIVE_VAD_LEAD = 1
LIVE_RULES_AHEAD = LIVE_VAD_LEAD


def live_speaking(flags: np.ndarray, lead: int = LIVE_VAD_LEAD, extra: np.ndarray | None = None) -> np.ndarray:
    """(T,) raw voice flags -> speaking: a voiced frame among the VAD_HANGOVER before and ``lead`` after. ``extra``:
    voice-over-music flags (silero >= VAD_LOW and the classifier's flag; a stream knows them only as far as its
    codes, maybe fewer than T): they open their own frame and the VAD_HANGOVER after it, no lead."""
    f = np.asarray(flags, bool)
    out = f.copy()
    for k in range(1, VAD_HANGOVER + 1):
        out[k:] |= f[:-k]
    for k in range(1, lead + 1):
        out[:-k] |= f[k:]
    return out | causal_hangover(extra, len(out)) if extra is not None else out


def causal_hangover(flags: np.ndarray, size: int) -> np.ndarray:
    """(size,) bool: a flag among this frame and the VAD_HANGOVER before (``flags`` cut or padded to ``size``)."""
    e = np.zeros(size, bool)
    n = min(size, len(flags))
    e[:n] = np.asarray(flags, bool)[:n]
    out = e.copy()
    for k in range(1, VAD_HANGOVER + 1):
        out[k:] |= e[:-k]
    return out


def live_rules(codes: np.ndarray, flags: np.ndarray, gap_direction: np.ndarray, gap_rms: float,
               lead: int = LIVE_VAD_LEAD, extra: np.ndarray | None = None) -> np.ndarray:
    """The live rules on raw voice flags (module doc above): closed outside ``live_speaking``, half open on its first
    frame and on the first frame after it, predicted closures shut, no smoothing. Frame t's output reads flags up
    to t + ``lead`` (the head's ``vad_lead``; LIVE_RULES_AHEAD by default) and codes up to t. ``flags`` may run
    past the codes (a stream's flags are known ``lead`` frames further than its final codes). ``extra``: the
    voice-over-music flags (``live_speaking``)."""
    s = live_speaking(flags, lead, extra)[:len(codes)]
    prev = np.r_[False, s[:-1]]
    w = s.astype(np.float32)
    w[s != prev] = 0.5
    y = np.asarray(codes, np.float32).copy()
    y[y @ gap_direction < CLOSED_GAP * gap_rms] = 0.0
    return y * w[:, None]
