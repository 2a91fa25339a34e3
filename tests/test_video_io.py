"""Audio decoding, video reading/resampling and the mp4 writer, on real media and generated clips."""

from __future__ import annotations

import os
import resource
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pdfgc.errors import InputError
from pdfgc.media.audio_io import decode_audio, is_silent, load_speech, to_mono_16k
from pdfgc.media.video import (
    VideoWriter,
    iter_frames_folder,
    iter_video_frames,
    list_frame_files,
    probe_video,
    read_video_frames,
)

DATA = Path("/work/shared/data")
MP3 = DATA / "pdfgc/audio_longer.mp3"
WAV_16K = DATA / "edtalk/mouth_source.wav"
MP4_AUDIO_30FPS = DATA / "megactor/audio_ENTF_1.mp4"  # 30 fps, 96 frames, 44.1 kHz stereo
MP4_NO_AUDIO_25FPS = DATA / "edtalk/pose_source1.mp4"
MP4_12FPS = DATA / "xportrait/driving_video.mp4"
FRAMES_DIR = DATA / "pdfgc/motions/exp/vox2_id01000_00077"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared test media not available")


def sine(freq: float, seconds: float, sr: int, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return np.repeat((amp * np.sin(2 * np.pi * freq * t))[None], channels, axis=0).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


def pattern(i: int, h: int = 96, w: int = 128) -> np.ndarray:
    """Smooth gradients plus a moving block: easy to compare after lossy coding."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 128)], axis=-1)
    img = img.astype(np.uint8)
    c = 8 + (i * 3) % max(w - 32, 1)
    img[20:44, c : c + 24] = (250, 20, 20)
    return img


def level_frame(i: int, h: int = 64, w: int = 64) -> np.ndarray:
    """A flat grey frame whose level encodes the index i (i < 30)."""
    return np.full((h, w, 3), 10 + 8 * i, np.uint8)


def decoded_audio_seconds(path: Path) -> float:
    a, sr = decode_audio(path)
    return a.shape[1] / sr


# --- audio decoding -----------------------------------------------------------------------------------


@needs_data
def test_decode_mp3():
    a, sr = decode_audio(MP3)
    assert sr == 44100 and a.dtype == np.float32 and a.ndim == 2 and a.shape[0] == 2
    assert abs(a.shape[1] / sr - 15.0) < 0.1
    assert np.abs(a).max() <= 1.0 and np.abs(a).max() > 0.05


@needs_data
def test_decode_mp4_audio_track_and_wav():
    a, sr = decode_audio(MP4_AUDIO_30FPS)
    assert sr == 44100 and a.shape[0] == 2 and abs(a.shape[1] / sr - 3.2) < 0.15
    w, sr = decode_audio(WAV_16K)
    assert sr == 16000 and w.shape[0] == 1 and abs(w.shape[1] / sr - 10.0) < 0.1
    speech = load_speech(WAV_16K)
    assert speech.dtype == np.float32 and speech.shape == (w.shape[1],)
    np.testing.assert_allclose(speech, w[0])
    assert not is_silent(speech)


def test_m4a_roundtrip(tmp_path):
    sr, seconds = 22050, 1.5
    x = sine(440, seconds, sr)
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=sr, layout="mono")
        s.codec_context.open()
        fs = s.codec_context.frame_size
        for start in range(0, x.shape[1], fs):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, start : start + fs]), format="fltp", layout="mono")
            f.sample_rate, f.pts, f.time_base = sr, start, Fraction(1, sr)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    a, rate = decode_audio(path)
    assert rate == sr and a.shape[0] == 1
    assert abs(a.shape[1] / sr - seconds) < 0.1
    assert abs(peak_hz(a[0], sr) - 440) < 5


def test_to_mono_16k_keeps_frequency_and_length():
    x = sine(1000, 2.0, 44100, channels=2)
    y = to_mono_16k(x, 44100)
    assert y.dtype == np.float32 and y.shape == (32000,)
    assert abs(peak_hz(y, 16000) - 1000) < 2
    assert abs(np.abs(y[1000:-1000]).max() - 0.5) < 0.01  # the channel mean of identical channels
    np.testing.assert_array_equal(to_mono_16k(y, 16000), y)


def test_is_silent():
    assert is_silent(np.zeros(16000, np.float32))
    assert is_silent(np.full(16000, 1e-4, np.float32))  # -80 dBFS
    assert is_silent(np.zeros(0, np.float32))
    assert not is_silent(sine(200, 1.0, 16000, amp=0.1)[0])


# --- bad inputs ---------------------------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    zero = tmp_path / "empty.mp3"
    zero.write_bytes(b"")
    text = tmp_path / "notes.mp3"
    text.write_text("this is a text file, not audio\n" * 20)
    return {"missing": tmp_path / "missing.wav", "zero": zero, "text": text}


@pytest.mark.parametrize("kind", ["missing", "zero", "text"])
def test_decode_audio_bad_files(tmp_path, kind):
    path = _bad_inputs(tmp_path)[kind]
    with pytest.raises(InputError, match=path.name):
        decode_audio(path)
    with pytest.raises(InputError, match=path.name):
        list(iter_video_frames(path))


@needs_data
def test_no_audio_or_no_video_track():
    with pytest.raises(InputError, match=r"pose_source1\.mp4 has no audio track"):
        decode_audio(MP4_NO_AUDIO_25FPS)
    with pytest.raises(InputError, match=r"audio_longer\.mp3 has no video stream"):
        next(iter_video_frames(MP3))
    with pytest.raises(InputError, match="audio_longer.mp3"):
        probe_video(MP3)


@needs_data
def test_truncated_video(tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(MP4_AUDIO_30FPS.read_bytes()[:50_000])  # the moov atom is lost
    with pytest.raises(InputError, match="cut.mp4"):
        list(iter_video_frames(cut))


# --- reading video ------------------------------------------------------------------------------------


@needs_data
def test_probe_video():
    info = probe_video(MP4_AUDIO_30FPS)
    assert (info.fps, info.num_frames, info.width, info.height) == (30.0, 96, 512, 512)
    assert info.has_audio and abs(info.duration_s - 3.2) < 0.05
    assert not probe_video(MP4_NO_AUDIO_25FPS).has_audio


@needs_data
def test_iter_video_frames_resamples_30fps_down():
    frames = list(iter_video_frames(MP4_AUDIO_30FPS, fps=25))
    assert len(frames) == 80  # 96 * 25 / 30
    assert frames[0].shape == (512, 512, 3) and frames[0].dtype == np.uint8
    native = read_video_frames(MP4_AUDIO_30FPS, fps=None, max_frames=7)
    # output k shows source floor(k * 30 / 25): 0, 1, 2, 3, 4, 6, ...
    for k, src in [(0, 0), (1, 1), (4, 4), (5, 6)]:
        np.testing.assert_array_equal(frames[k], native[src])


@needs_data
def test_iter_video_frames_duplicates_12fps_up():
    info = probe_video(MP4_12FPS)
    assert abs(info.fps - 12) < 0.05
    n = 0
    dups = 0
    prev = None
    for f in iter_video_frames(MP4_12FPS, fps=25):
        dups += prev is not None and np.array_equal(f, prev)
        prev = f
        n += 1
    assert abs(n - info.num_frames * 25 / info.fps) <= 1.5
    assert dups >= n - info.num_frames - 1  # every output frame beyond the source count is a duplicate


@needs_data
def test_iter_video_frames_same_rate_is_identity():
    a = read_video_frames(MP4_NO_AUDIO_25FPS, fps=25)
    b = read_video_frames(MP4_NO_AUDIO_25FPS, fps=None)
    assert a.shape == b.shape == (250, 256, 256, 3)
    np.testing.assert_array_equal(a[::50], b[::50])


def test_time_resampling_rule(tmp_path):
    """A 30 fps clip whose frames encode their index, read at 25 fps and at 60 fps."""
    path = tmp_path / "idx30.mp4"
    with VideoWriter(path, fps=30, crf=0, preset="ultrafast") as w:
        w.write_batch(np.stack([level_frame(i) for i in range(30)]))
    assert probe_video(path).fps == 30.0

    def indices(fps):
        return [int(round((f.astype(float).mean() - 10) / 8)) for f in iter_video_frames(path, fps=fps)]

    assert indices(None) == list(range(30))
    assert indices(25) == [k * 30 // 25 for k in range(25)]
    assert indices(60) == [k // 2 for k in range(60)]


def test_rotation_metadata_is_applied(tmp_path):
    path = tmp_path / "rotated.mp4"
    img = pattern(0, h=48, w=80)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"crf": "0"})
        s.width, s.height, s.pix_fmt = 80, 48, "yuv420p"
        s.set_display_rotation(90)  # counter-clockwise, as VideoFrame.rotation reads it back
        for i in range(3):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (48, 80, 90)
    frames = read_video_frames(path, fps=None)
    assert frames.shape == (3, 80, 48, 3)
    assert np.abs(frames[0].astype(int) - np.rot90(img, 1)).mean() < 3


# --- frame folders ------------------------------------------------------------------------------------


@needs_data
def test_frames_folder():
    files = list_frame_files(FRAMES_DIR)
    assert len(files) == 31 and [f.name for f in files] == sorted(os.listdir(FRAMES_DIR))
    first = next(iter_frames_folder(FRAMES_DIR))
    assert first.shape == (224, 224, 3) and first.dtype == np.uint8


def test_frames_folder_errors(tmp_path):
    with pytest.raises(InputError, match="nowhere"):
        list_frame_files(tmp_path / "nowhere")
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no image files"):
        list_frame_files(tmp_path)
    from PIL import Image

    Image.fromarray(pattern(0)).save(tmp_path / "0001.png")
    (tmp_path / "0002.png").write_text("not a png")
    frames = iter_frames_folder(tmp_path)
    assert next(frames).shape == (96, 128, 3)
    with pytest.raises(InputError, match="0002.png"):
        next(frames)


# --- writing video ------------------------------------------------------------------------------------


def test_writer_roundtrip_with_16k_mono_audio(tmp_path):
    path = tmp_path / "out.mp4"
    frames = np.stack([pattern(i) for i in range(30)])
    audio = sine(440, 1.2, 16000)[0]  # (samples,) 16 kHz mono
    with VideoWriter(path, fps=25, audio=audio, audio_rate=16000) as w:
        w.write(frames[0])
        w.write_batch(frames[1:])
        assert w.frames_written == 30
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]

    info = probe_video(path)
    assert (info.fps, info.num_frames, info.width, info.height, info.has_audio) == (25.0, 30, 128, 96, True)
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert a.codec_context.name == "aac" and a.rate == 16000 and a.channels == 1
    back_audio, sr = decode_audio(path)
    assert sr == 16000 and abs(back_audio.shape[1] / sr - 1.2) < 0.05
    assert abs(peak_hz(back_audio[0], sr) - 440) < 5
    back = read_video_frames(path, fps=None)
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 3


def test_writer_keeps_full_audio_and_pads_odd_sizes(tmp_path):
    path = tmp_path / "odd.mp4"
    frames = [pattern(i, h=47, w=65) for i in range(10)]  # 0.4 s of video
    audio = sine(300, 2.0, 44100, channels=2)  # 2 s of stereo audio
    with VideoWriter(path, audio=audio, audio_rate=44100, preset="ultrafast") as w:
        w.write_batch(frames)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (10, 66, 48)
    assert abs(decoded_audio_seconds(path) - 2.0) < 0.05
    back = read_video_frames(path, fps=None)
    # looser than the 128x96 round trip: 4:2:0 chroma blurs the sharp red block on so small a frame
    assert np.abs(back[:, :47, :65].astype(int) - np.stack(frames)).mean() < 5


def test_writer_resamples_a_rate_aac_refuses(tmp_path):
    path = tmp_path / "rate.mp4"
    with VideoWriter(path, audio=sine(440, 1.0, 37800), audio_rate=37800, preset="ultrafast") as w:
        w.write_batch(np.stack([pattern(i) for i in range(5)]))
    a, sr = decode_audio(path)
    assert sr == 48000 and abs(a.shape[1] / sr - 1.0) < 0.05


def test_writer_exception_leaves_nothing(tmp_path):
    path = tmp_path / "never.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, audio=sine(440, 1.0, 16000), audio_rate=16000) as w:
            w.write_batch(np.stack([pattern(i) for i in range(5)]))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    # an existing file at the path is left untouched by an aborted write
    path.write_bytes(b"previous")
    w = VideoWriter(path)
    w.write(pattern(0))
    w.abort()
    assert path.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [path]


def test_writer_bad_output_paths(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        VideoWriter(tmp_path / "no_such_dir" / "out.mp4")
    with pytest.raises(InputError, match="is a directory"):
        VideoWriter(tmp_path)
    (tmp_path / "keep.mp4").write_bytes(b"x")
    with pytest.raises(InputError, match="exists"):
        VideoWriter(tmp_path / "keep.mp4", overwrite=False)
    with pytest.raises(InputError, match="no video frames"):
        with VideoWriter(tmp_path / "empty.mp4"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_writer_memory_does_not_grow_with_length(tmp_path):
    base = pattern(0, h=224, w=224)
    audio = sine(220, 20.0, 16000)  # as long as the video, so it is muxed along the way
    with VideoWriter(tmp_path / "long.mp4", audio=audio, audio_rate=16000, preset="ultrafast") as w:
        for i in range(500):
            if i == 100:
                rss_100 = _rss_mb()
                peak_100 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            w.write(np.roll(base, 3 * i, axis=1))
        growth = _rss_mb() - rss_100
        peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak_100
    # 400 more raw frames are 60 MB: buffering them would show
    assert growth < 20 and peak_growth < 20, (growth, peak_growth)
    assert probe_video(tmp_path / "long.mp4").num_frames == 500
