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


def decode_audio(path: str | os.PathLike, source: str = "audio") -> tuple[np.ndarray, int]:
    """Decode the first audio track of `path` (wav/mp3/m4a/aac/ogg/flac, or mp4/mov/mkv).

    Returns float32 samples shaped (channels, samples), nominally in [-1, 1], and the native sample rate.
    """
    p = Path(path)
    with open_media(p, source) as container:
        if not container.streams.audio:
            raise InputError(f"{source} file {p} has no audio track")
        stream = container.streams.audio[0]
        resampler = None
        chunks: list[np.ndarray] = []
        rate = stream.rate or stream.codec_context.sample_rate
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    # planar float keeps the native layout and rate; to_ndarray gives (channels, samples)
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
                    rate = frame.sample_rate
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray())
        except av.FFmpegError as e:
            raise InputError(f"{source} file {p}: the audio track is corrupt and cannot be decoded: {e}") from e
    chunks = [c for c in chunks if c.shape[-1] > 0]
    if not chunks:
        raise InputError(f"{source} file {p} has an audio track with no samples (zero-length audio)")
    # float wav/flac can hold NaN/Inf: they are not silence, and the AAC encoder would fail on them later
    if not all(np.isfinite(c).all() for c in chunks):  # per decoded chunk: no temporary the size of the track
        raise InputError(f"{source} file {p}: the audio contains NaN/Inf samples (a broken float recording)")
    audio = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    return np.ascontiguousarray(audio), int(rate)


def to_mono_16k(samples: np.ndarray, sr: int, target_sr: int = 16000) -> np.ndarray:
    """Average the channels of (channels, n) or (n,) audio and resample to `target_sr`; float32 (n',)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0)
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


def rms_db(mono: np.ndarray) -> float:
    """RMS level in dBFS (-inf for digital silence or empty audio)."""
    x = np.asarray(mono, dtype=np.float64)
    if x.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(x))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def check_finite(samples: np.ndarray, name: str = "audio") -> None:
    """InputError when `samples` hold NaN or Inf (they are not silence: say what they are)."""
    if not np.isfinite(np.asarray(samples)).all():
        raise InputError(f"{name}: the audio contains NaN/Inf samples (a broken float recording)")


def is_silent(mono: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the RMS level of `mono` is below `threshold_db` dBFS (or the audio is empty). NaN/Inf samples
    raise InputError ("contains NaN/Inf"): their level is undefined, and calling them silent misleads."""
    check_finite(mono)
    return rms_db(mono) < threshold_db
