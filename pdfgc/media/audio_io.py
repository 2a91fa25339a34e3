"""Audio decoding (PyAV) and conversion to the 16 kHz mono speech the audio encoder expects."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import soxr

from pdfgc.errors import InputError


def open_media(path: str | os.PathLike, source: str):
    """Open a media file with PyAV, turning every failure into an InputError that names the file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{source} file {p} does not exist")
    if p.is_dir():
        raise InputError(f"{source} file {p} is a directory, not a media file")
    if p.stat().st_size == 0:
        raise InputError(f"{source} file {p} is empty (0 bytes)")
    try:
        return av.open(str(p))
    except av.FFmpegError as e:
        raise InputError(f"{source} file {p} cannot be read as audio/video (corrupt or unsupported format): {e}") from e


class _Samples:
    """Decoded samples appended into one preallocated (channels, capacity) float32 buffer, sized from the
    container's duration: the track is held once, not as thousands of small chunks plus their concatenation (the
    unused tail of an over-estimate is never touched, so it costs no memory)."""

    def __init__(self, estimate: int):
        self.estimate = max(int(estimate), 0)
        self.buf: np.ndarray | None = None
        self.n = 0

    def add(self, a: np.ndarray) -> bool:
        """Append (channels, k) samples; False when they hold NaN/Inf."""
        k = a.shape[-1]
        if k == 0:
            return True
        if self.buf is None:
            self.buf = np.empty((a.shape[0], max(self.estimate, 16 * k)), np.float32)
        elif self.n + k > self.buf.shape[1]:  # the estimate was short: grow geometrically
            grown = np.empty((self.buf.shape[0], max(2 * self.buf.shape[1], self.n + k)), np.float32)
            grown[:, :self.n] = self.buf[:, :self.n]
            self.buf = grown
        self.buf[:, self.n:self.n + k] = a
        self.n += k
        return bool(np.isfinite(a).all())

    def result(self) -> np.ndarray:
        out = self.buf[:, :self.n]
        return out if out.flags.c_contiguous else np.ascontiguousarray(out)  # mono: already contiguous, no copy


def _expected_samples(container, stream, rate: int) -> int:
    seconds = 0.0
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / av.time_base
    return int(seconds * (rate or 0) * 1.01) + 4096 if seconds > 0 else 0


def decode_audio(path: str | os.PathLike, source: str = "audio") -> tuple[np.ndarray, int]:
    """Decode the first audio track of `path` (wav/mp3/m4a/aac/ogg/flac, or mp4/mov/mkv).

    Returns float32 samples shaped (channels, samples), nominally in [-1, 1], and the native sample rate.
    """
    p = Path(path)
    finite = True
    with open_media(p, source) as container:
        if not container.streams.audio:
            raise InputError(f"{source} file {p} has no audio track")
        stream = container.streams.audio[0]
        resampler = None
        rate = stream.rate or stream.codec_context.sample_rate
        samples = _Samples(_expected_samples(container, stream, rate))
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    # planar float keeps the native layout and rate; to_ndarray gives (channels, samples)
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
                    rate = frame.sample_rate
                for out in resampler.resample(frame):
                    finite &= samples.add(out.to_ndarray())
            if resampler is not None:
                for out in resampler.resample(None):
                    finite &= samples.add(out.to_ndarray())
        except av.FFmpegError as e:
            raise InputError(f"{source} file {p}: the audio track is corrupt and cannot be decoded: {e}") from e
    if samples.n == 0:
        raise InputError(f"{source} file {p} has an audio track with no samples (zero-length audio)")
    # float wav/flac can hold NaN/Inf: they are not silence, and the AAC encoder would fail on them later
    if not finite:
        raise InputError(f"{source} file {p}: the audio contains NaN/Inf samples (a broken float recording)")
    return samples.result(), int(rate)


def to_mono_16k(samples: np.ndarray, sr: int, target_sr: int = 16000) -> np.ndarray:
    """Average the channels of (channels, n) or (n,) audio and resample to `target_sr`; float32 (n',)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x[0] if x.shape[0] == 1 else x.mean(axis=0)  # one channel: its own values, without a copy
    elif x.ndim != 1:
        raise ValueError(f"audio must be (channels, samples) or (samples,), got shape {x.shape}")
    if sr == target_sr or x.size == 0:
        return np.ascontiguousarray(x, dtype=np.float32)
    # the official code used librosa/resampy kaiser_best; soxr HQ is librosa's current default
    return soxr.resample(x, sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_speech(path: str | os.PathLike, sr: int = 16000, source: str = "audio") -> np.ndarray:
    """Decode `path` and return its audio as float32 mono at `sr` Hz."""
    samples, native_sr = decode_audio(path, source=source)
    return to_mono_16k(samples, native_sr, target_sr=sr)


_BLOCK = 1 << 20  # samples per block: whole-file statistics without float64 copies of the whole file


def rms_db(mono: np.ndarray) -> float:
    """RMS level in dBFS (-inf for digital silence or empty audio). Summed block by block in float64: a 30 min
    file would otherwise take two float64 temporaries of 230 MB each."""
    x = np.asarray(mono).reshape(-1)
    if x.size == 0:
        return float("-inf")
    total = sum(float(np.square(x[i:i + _BLOCK], dtype=np.float64).sum()) for i in range(0, x.size, _BLOCK))
    rms = float(np.sqrt(total / x.size))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def check_finite(samples: np.ndarray, name: str = "audio") -> None:
    """InputError when `samples` hold NaN or Inf (they are not silence: say what they are)."""
    x = np.asarray(samples).reshape(-1)
    if not all(np.isfinite(x[i:i + _BLOCK]).all() for i in range(0, x.size, _BLOCK)):
        raise InputError(f"{name}: the audio contains NaN/Inf samples (a broken float recording)")


def is_silent(mono: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the RMS level of `mono` is below `threshold_db` dBFS (or the audio is empty). NaN/Inf samples
    raise InputError ("contains NaN/Inf"): their level is undefined, and calling them silent misleads."""
    check_finite(mono)
    return rms_db(mono) < threshold_db
