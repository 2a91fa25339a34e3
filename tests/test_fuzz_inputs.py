"""Issue 22: generated inputs thrown at the readers. Audio of every layout (1-8 channels, 8-192 kHz, each sample
format, several containers) and malformed control strings / curve files: each gives a clean result or ONE
InputError, never another exception or a crash. Sized to run in well under a minute together."""
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from pdfgc.controls.explicit import (
    POSE_CHANNELS,
    BlinkControl,
    EmotionControl,
    GazeControl,
    LipControl,
    PoseControl,
    load_curve_file,
    parse_spans,
    parse_times,
)
from pdfgc.errors import InputError
from pdfgc.media.audio_io import decode_audio, decode_speech

RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000]
FAST = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            derandomize=True)


def _signal(channels: int, n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    return np.stack([0.4 * np.sin(2 * np.pi * (200 + 50 * k) * t) for k in range(channels)])  # (ch, n)


def _write_wav_module(path: Path, x: np.ndarray, rate: int, width: int) -> None:
    """Python's `wave`: plain PCM, no channel mask (the 8-channel crash's files)."""
    full = 2 ** (8 * width - 1) - 1
    if width == 1:
        data = (x.T * 127 + 128).astype(np.uint8)
    elif width == 3:  # 24-bit: the low three bytes of each little-endian int32
        data = np.ascontiguousarray((x.T * full).astype("<i4")).view(np.uint8).reshape(-1, 4)[:, :3]
    else:
        data = (x.T * full).astype(f"<i{width}")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[0])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def _write_scipy(path: Path, x: np.ndarray, rate: int, dtype: str) -> None:
    """scipy's WAV writer: float32/float64/int16/int32/uint8 (with a channel mask above 2 channels)."""
    import scipy.io.wavfile

    y = x.T
    if dtype == "uint8":
        y = y * 127 + 128
    elif dtype.startswith("int"):
        y = y * (2 ** (int(dtype[3:]) - 1) - 1)
    scipy.io.wavfile.write(str(path), rate, y.astype(dtype))


def _write_pyav(path: Path, x: np.ndarray, rate: int, codec: str) -> None:
    """An encoded container (flac, aac in m4a/mkv, opus in ogg, pcm in mkv) written with PyAV's encoders."""
    ch = x.shape[0]
    layout = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}[ch]
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=rate, layout=layout)
        fmt = s.codec_context.format.name
        n = s.codec_context.frame_size or 1024
        for i in range(0, x.shape[1], n):
            block = np.ascontiguousarray(x[:, i:i + n], np.float32)
            f = av.AudioFrame(format="fltp" if fmt.endswith("p") or fmt == "fltp" else fmt, layout=layout,
                              samples=block.shape[1])
            if f.format.is_planar:
                dt = {"fltp": np.float32, "s16p": np.int16, "s32p": np.int32}[f.format.name]
                scale = 1 if dt is np.float32 else np.iinfo(dt).max
                for c in range(ch):  # plane by plane: PyAV's from_ndarray fails on 8 channels
                    f.planes[c].update((block[c] * scale).astype(dt).tobytes())
            else:
                dt = {"flt": np.float32, "s16": np.int16, "s32": np.int32}[f.format.name]
                scale = 1 if dt is np.float32 else np.iinfo(dt).max
                f.planes[0].update((block.T * scale).astype(dt).tobytes())
            f.sample_rate = rate
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


LAYOUTS = st.one_of(
    st.tuples(st.just("wave"), st.integers(1, 8), st.sampled_from(RATES), st.sampled_from([1, 2, 3, 4])),
    st.tuples(st.just("scipy"), st.integers(1, 8), st.sampled_from(RATES),
              st.sampled_from(["uint8", "int16", "int32", "float32", "float64"])),
    st.tuples(st.just("pyav"), st.integers(1, 8), st.sampled_from([44100, 48000]),
              st.sampled_from(["flac.flac", "aac.m4a", "pcm_s16le.mkv", "pcm_f32le.wav"])),
    st.tuples(st.just("pyav"), st.integers(1, 2), st.sampled_from([16000, 48000]),
              st.sampled_from(["libopus.ogg", "libmp3lame.mp3"])),
)


@settings(max_examples=150, **FAST)
@given(layout=LAYOUTS, seconds=st.sampled_from([0.05, 0.3]))
def test_every_audio_layout_decodes_or_is_one_clean_error(tmp_path_factory, layout, seconds):
    kind, ch, rate, fmt = layout
    d = tmp_path_factory.mktemp("a")
    x = _signal(ch, max(1, int(seconds * rate)), rate)
    if kind == "wave":
        path = d / "a.wav"
        _write_wav_module(path, x, rate, fmt)
    elif kind == "scipy":
        path = d / "a.wav"
        _write_scipy(path, x, rate, fmt)
    else:
        codec, ext = fmt.split(".")
        path = d / f"a.{ext}"
        try:
            _write_pyav(path, x, rate, codec)
        except (av.FFmpegError, ValueError):  # an encoder refusing a layout: nothing to read
            reject()
    samples, r = decode_audio(path)  # every file here is valid: it decodes (no error, no crash)
    assert samples.dtype == np.float32 and samples.shape[0] == ch
    assert r == (48000 if fmt == "libopus.ogg" else rate)  # opus always decodes at 48 kHz
    assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.01
    if kind != "pyav":  # lossless: the same samples (8-bit: its own quantisation)
        tol = 1.5 / 127 if fmt in (1, "uint8") else 1e-3
        assert np.abs(samples - x).max() < tol
    mono, ms, n = decode_speech(path)
    assert mono.ndim == 1 and n == mono.size and np.isfinite(mono).all()


@pytest.mark.parametrize("name", ["noise.wav", "noise.mp3", "cut.wav"])
def test_broken_audio_files_are_one_clean_error(tmp_path, name):
    p = tmp_path / name
    rng = np.random.default_rng(1)
    if name == "cut.wav":
        _write_wav_module(p, _signal(8, 8000, 16000), 16000, 2)
        p.write_bytes(p.read_bytes()[:300])  # the header says more than is there
    else:
        p.write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    try:
        samples, _ = decode_audio(p)
        assert np.isfinite(samples).all()
    except InputError as e:
        assert name in str(e)


# ---- control strings -------------------------------------------------------------------------------------------------

TOKENS = ["0", "1", "2.5", "-5", "1e9", "-1e-3", "nan", "inf", ".", "e", ":", ";", ",", "=", "-", "..", " ", "s",
          "f", "yaw", "pitch", "roll", "tx", "ty", "scale", "h", "v", "camera", "deg", "happy", "sad", "neutral",
          "rate", "times", "seed", "duration", "openness", "mute", "intensity", "ramp", "absolute", "linear",
          "ref", "x.csv", "to", "+", "\n", "\t", "é", "\x00", "/", "{", "["]
SPECS = st.lists(st.sampled_from(TOKENS), max_size=12).map("".join) | st.text(max_size=30)
PARSERS = [PoseControl.parse, BlinkControl.parse, GazeControl.parse, EmotionControl.parse, LipControl.parse,
           parse_times, parse_spans]


@settings(max_examples=400, **FAST)
@given(spec=SPECS, which=st.integers(0, len(PARSERS) - 1))
def test_control_strings_parse_or_give_one_clean_error(spec, which):
    try:
        out = PARSERS[which](spec)
    except InputError as e:
        assert str(e) and "\n" not in str(e).replace(spec, "")
        return
    if hasattr(out, "validate"):
        out.validate()  # what parsed is valid as a control


CELLS = st.sampled_from(["0", "1", "-3", "2.5", "1e9", "nan", "", "abc", "true", "-0.1", "45", "1e-300"])
HEADERS = st.lists(st.sampled_from(["time", "t", "frame", "yaw", "pitch", "roll", "tx", "ty", "scale", "bogus", ""]),
                   min_size=0, max_size=4)


@settings(max_examples=150, **FAST)
@given(header=HEADERS, rows=st.lists(st.lists(CELLS, max_size=5), max_size=5), as_json=st.booleans(),
       junk=st.sampled_from(["", "\x00\xff", "{", "]"]))
def test_curve_files_read_or_give_one_clean_error(tmp_path_factory, header, rows, as_json, junk):
    d = tmp_path_factory.mktemp("c")
    if as_json:
        import json
        p = d / "c.json"
        items = [dict(zip(header, r)) for r in rows]
        for it in items:  # numbers as numbers where they parse, else the raw string
            for k, v in it.items():
                try:
                    it[k] = float(v) if v not in ("true",) else True
                except ValueError:
                    pass
        p.write_text(json.dumps(items) + junk)
    else:
        p = d / "c.csv"
        p.write_bytes(("\n".join([",".join(header)] + [",".join(r) for r in rows]) + junk).encode("utf-8",
                                                                                                  "surrogatepass"))
    try:
        keys = load_curve_file(p, POSE_CHANNELS, "pose curve file")
    except InputError as e:
        assert "c." in str(e)
        return
    assert keys and all(np.isfinite(k["t"]) and k["t"] >= 0 for k in keys)
    PoseControl(keyframes=keys).validate().curves(5)
