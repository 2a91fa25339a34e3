"""Audio decoding (PyAV) and conversion to the 16 kHz mono speech the audio encoder expects."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import soxr

from pdfgc.errors import InputError
from pdfgc.fileio import input_file, show_path
from pdfgc.vocabulary import SAMPLE_RATE


def open_media(path: str | os.PathLike, source: str):
    """Open a media file with PyAV, turning every failure into an InputError that names the file."""
    p = input_file(path, f"{source} file", kind="a media file")
    try:
        return av.open(str(p))
    except (av.FFmpegError, OSError) as e:
        raise InputError(f"{source} file {show_path(p)} cannot be read as audio/video (corrupt or unsupported "
                         f"format): {e}") from e


# Decoded samples are converted to float here, in numpy, from the first `channels` planes only: PyAV 18 lists
# one plane too many for an 8-channel planar frame, and its AudioFrame.to_ndarray reads that bogus ninth plane and
# crashes the process (SIGSEGV) -- what the old AudioResampler(fltp) + to_ndarray path did with every 8-channel
# file (WAV of any rate and sample format, with or without a channel mask; 1-7 channels were fine; issue 22).
# Scales: full scale of each integer format maps to 1.0.
_SAMPLE_TYPES = {"u8": ("u1", 128.0, 128.0), "s16": ("<i2", 0.0, 32768.0), "s32": ("<i4", 0.0, 2.0 ** 31),
                 "s64": ("<i8", 0.0, 2.0 ** 63), "flt": ("<f4", 0.0, 1.0), "dbl": ("<f8", 0.0, 1.0)}


def frame_samples(frame, channels: int | None = None) -> np.ndarray:
    """An av.AudioFrame -> float32 (channels, samples), from its planes (planar or interleaved, any sample format
    FFmpeg decodes to). `channels`: the track's channel count; a frame with another count is an InputError."""
    fmt = frame.format
    base = fmt.name[:-1] if fmt.is_planar else fmt.name
    if base not in _SAMPLE_TYPES:
        raise InputError(f"unsupported audio sample format '{fmt.name}'")
    dtype, offset, scale = _SAMPLE_TYPES[base]
    ch, n = len(frame.layout.channels), int(frame.samples)
    if channels is not None and ch != channels:
        raise InputError(f"the audio changes from {channels} to {ch} channels mid-track")
    if fmt.is_planar:
        raw = np.stack([np.frombuffer(frame.planes[i], dtype, count=n) for i in range(ch)])
    else:
        raw = np.frombuffer(frame.planes[0], dtype, count=n * ch).reshape(n, ch).T
    out = raw.astype(np.float32)
    if offset:
        out -= offset
    if scale != 1.0:
        out *= np.float32(1.0 / scale)
    return out


def _frames(container, stream, source: str, path: Path):
    """(channels, k) float32 blocks of `stream`, in order; the rate and channel count stay those of the first
    frame (a track that changes them mid-way is refused, not silently resampled)."""
    channels = rate = None
    try:
        for frame in container.decode(stream):
            if channels is None:
                channels, rate = len(frame.layout.channels), frame.sample_rate
                if channels < 1:
                    raise InputError(f"{source} file {show_path(path)}: the audio track has no channels")
            elif frame.sample_rate != rate:
                raise InputError(f"{source} file {show_path(path)}: the sample rate changes mid-track "
                                 f"({rate} -> {frame.sample_rate} Hz)")
            try:
                yield frame_samples(frame, channels)
            except InputError as e:
                raise InputError(f"{source} file {show_path(path)}: {e}") from None
    except av.FFmpegError as e:
        raise InputError(f"{source} file {show_path(path)}: the audio track is corrupt and cannot be decoded: "
                         f"{e}") from e


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


def container_seconds(path: str | os.PathLike, source: str = "audio") -> float | None:
    """The duration the file's header states (nothing is decoded), or None when it states none."""
    with open_media(path, source) as c:
        if c.duration:
            return c.duration / av.time_base
        for s in list(c.streams.audio) + list(c.streams.video):
            if s.duration and s.time_base:
                return float(s.duration * s.time_base)
    return None


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
        rate = stream.rate or stream.codec_context.sample_rate
        samples = _Samples(_expected_samples(container, stream, rate))
        for block in _frames(container, stream, source, p):
            finite &= samples.add(block)
        rate = stream.codec_context.sample_rate or rate
    if samples.n == 0:
        raise InputError(f"{source} file {p} has an audio track with no samples (zero-length audio)")
    # float wav/flac can hold NaN/Inf: they are not silence, and the AAC encoder would fail on them later
    if not finite:
        raise InputError(f"{source} file {p}: the audio contains NaN/Inf samples (a broken float recording)")
    return samples.result(), int(rate)


def _decoded_blocks(path: Path, source: str, estimate_rate: int | None = None):
    """(rate, iterator of (channels, k) float32 blocks) of the first audio track, decoded in order; with
    `estimate_rate`, also the container's length estimate in samples at that rate."""
    container = open_media(path, source)
    if not container.streams.audio:
        container.close()
        raise InputError(f"{source} file {path} has no audio track")
    stream = container.streams.audio[0]
    rate = int(stream.rate or stream.codec_context.sample_rate)

    def blocks():
        try:
            yield from _frames(container, stream, source, path)
        finally:
            container.close()
    if estimate_rate is not None:
        return rate, blocks(), _expected_samples(container, stream, estimate_rate)
    return rate, blocks()


class AudioTrack:
    """A file's audio track for the mp4's sound: decoded again, in order, while the video is written, so it is never
    held whole (memory does not grow with its length). `max_seconds` cuts it."""

    def __init__(self, path: str | os.PathLike, source: str = "audio", max_seconds: float | None = None):
        self.path, self.source, self.max_seconds = Path(path), source, max_seconds
        rate, it = _decoded_blocks(self.path, source)
        first = next((b for b in it if b.shape[-1]), None)
        it.close()
        if first is None:
            raise InputError(f"{source} file {self.path} has an audio track with no samples (zero-length audio)")
        # more than two channels (5.1, 7.1, unlabelled multichannel) go into the mp4 as their mean, mono: the
        # speech is in every channel's mix, and the AAC writer only takes the layouts mono and stereo
        self.rate, self.channels = rate, 1 if first.shape[0] > 2 else int(first.shape[0])

    def blocks(self):
        """(channels, k) float32 blocks from the start, up to `max_seconds`."""
        left = None if self.max_seconds is None else int(np.ceil(self.max_seconds * self.rate))
        _, it = _decoded_blocks(self.path, self.source)
        for b in it:
            if b.shape[0] > 2:
                b = b.mean(axis=0, keepdims=True)
            if left is not None:
                if left <= 0:
                    it.close()
                    return
                b = b[:, :left]
                left -= b.shape[1]
            yield b


def decode_speech(path: str | os.PathLike, source: str = "audio", max_seconds: float | None = None,
                  target_sr: int = SAMPLE_RATE) -> tuple[np.ndarray, float, int]:
    """The track as 16 kHz mono, decoded and resampled block by block (soxr's stream: the same samples as
    `to_mono_16k` of the whole decoded track, without ever holding the native track). Returns (samples, mean
    square of the WHOLE 16 kHz track, its length in samples) -- with `max_seconds` only that much is kept, while the
    rest is still decoded for the official loudness normalisation, which is over the whole file."""
    p = Path(path)
    rate, it, estimate = _decoded_blocks(p, source, target_sr)
    keep = None if max_seconds is None else int(np.ceil(max_seconds * target_sr))
    out = _Samples(estimate if keep is None else min(estimate, keep))  # sized once: no doubling copies
    total, count, finite = 0.0, 0, True
    rs = None if rate == target_sr else soxr.ResampleStream(rate, target_sr, 1, dtype="float32", quality="HQ")

    def take(y: np.ndarray) -> None:
        nonlocal total, count, finite
        if y.size == 0:
            return
        finite &= bool(np.isfinite(y).all())
        total += float(np.square(y, dtype=np.float64).sum())
        count += y.size
        if keep is None or out.n < keep:
            out.add(y[None, :(None if keep is None else keep - out.n)])
    for b in it:
        mono = b[0] if b.shape[0] == 1 else b.mean(axis=0)
        take(rs.resample_chunk(mono, last=False) if rs is not None else mono.astype(np.float32, copy=False))
    if rs is not None:
        take(rs.resample_chunk(np.zeros(0, np.float32), last=True))
    if count == 0:
        raise InputError(f"{source} file {p} has an audio track with no samples (zero-length audio)")
    if not finite:
        raise InputError(f"{source} file {p}: the audio contains NaN/Inf samples (a broken float recording)")
    return out.result()[0], total / count, count


def to_mono_16k(samples: np.ndarray, sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
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


def load_speech(path: str | os.PathLike, sr: int = SAMPLE_RATE, source: str = "audio") -> np.ndarray:
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
    """True when the RMS level of `mono` around its mean is below `threshold_db` dBFS (or the audio is empty): a
    constant DC offset (a recorder's bias, a stuck converter) is no sound, however far from zero. NaN/Inf samples
    raise InputError ("contains NaN/Inf"): their level is undefined, and calling them silent misleads."""
    check_finite(mono)
    x = np.asarray(mono).reshape(-1)
    if x.size == 0:
        return True
    mean = sum(float(x[i:i + _BLOCK].sum(dtype=np.float64)) for i in range(0, x.size, _BLOCK)) / x.size
    total = sum(float(np.square(x[i:i + _BLOCK] - mean, dtype=np.float64).sum()) for i in range(0, x.size, _BLOCK))
    rms = float(np.sqrt(total / x.size))
    return rms <= 0 or 20.0 * np.log10(rms) < threshold_db
