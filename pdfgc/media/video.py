"""Video reading (PyAV, streamed, resampled in time), frame folders, and an atomic H.264/AAC mp4 writer."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soxr

from pdfgc.errors import InputError
from pdfgc.fileio import clean_stale_temps, disk_full_error
from pdfgc.media.audio_io import open_media
from pdfgc.media.images import read_image_rgb
from pdfgc.vocabulary import FPS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# pts are often rounded to the millisecond (mkv/flv time base 1/1000): without a tolerance a 30 fps clip
# read at 30 fps would drop and duplicate frames.
_PTS_TOLERANCE_S = 1e-3


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    num_frames: int  # at the native rate; estimated from the duration when the container does not say
    width: int  # as displayed, i.e. after the rotation metadata
    height: int
    duration_s: float
    has_audio: bool
    rotation: int = 0  # degrees counter-clockwise applied on reading (multiple of 90)


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def _quarter_turns(frame) -> int:
    # PyAV >= 13 exposes the display matrix as VideoFrame.rotation (counter-clockwise degrees)
    rotation = getattr(frame, "rotation", 0) or 0
    return int(round(rotation / 90.0)) % 4


def _video_stream(container, path: Path, source: str):
    if not container.streams.video:
        raise InputError(f"{source} file {path} has no video stream")
    return container.streams.video[0]


def probe_video(path: str | os.PathLike, source: str = "video") -> VideoInfo:
    """Frame rate, frame count, displayed size, duration and audio presence of a video file."""
    p = Path(path)
    with open_media(p, source) as container:
        stream = _video_stream(container, p, source)
        fps = _stream_fps(stream)
        duration = 0.0
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        num_frames = int(stream.frames or 0)
        if num_frames <= 0 and duration > 0 and fps > 0:
            num_frames = int(round(duration * fps))
        if duration <= 0 and num_frames > 0 and fps > 0:
            duration = num_frames / fps
        try:
            # the rotation lives in frame side data: decode one frame to read it
            frame = next(container.decode(stream), None)
        except av.FFmpegError as e:
            raise InputError(f"{source} file {p}: the video track is corrupt and cannot be decoded: {e}") from e
        if frame is None:
            raise InputError(f"{source} file {p} has a video stream with no frames")
        width, height = frame.width, frame.height
        turns = _quarter_turns(frame)
        if turns % 2:
            width, height = height, width
        return VideoInfo(
            fps=fps,
            num_frames=num_frames,
            width=width,
            height=height,
            duration_s=duration,
            has_audio=bool(container.streams.audio),
            rotation=turns * 90,
        )


def _decode_frames(container, stream, path: Path, source: str) -> Iterator[tuple[float, float | None, np.ndarray]]:
    """(presentation time s, duration s or None, RGB uint8 HxWx3) for each frame, rotation applied."""
    stream.thread_type = "AUTO"
    try:
        for frame in container.decode(stream):
            t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
            dur = getattr(frame, "duration", None)
            dur = float(dur * frame.time_base) if dur and frame.time_base else None
            img = frame.to_ndarray(format="rgb24")
            turns = _quarter_turns(frame)
            if turns:
                img = np.ascontiguousarray(np.rot90(img, turns))
            yield t, dur, img
    except av.FFmpegError as e:
        raise InputError(f"{source} file {path}: the video track is corrupt and cannot be decoded: {e}") from e


def iter_video_frames(
    path: str | os.PathLike, fps: float | None = FPS, source: str = "video"
) -> Iterator[np.ndarray]:
    """Stream RGB uint8 (H, W, 3) frames of `path`, resampled in time to `fps` (None: native rate).

    Output frame k shows the source frame with the latest presentation time <= k / fps (frames are
    duplicated or dropped, never blended); the output covers the source duration.
    """
    p = Path(path)
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    container = open_media(p, source)
    try:
        stream = _video_stream(container, p, source)
        frames = _decode_frames(container, stream, p, source)
        if fps is None:
            any_frame = False
            for _, _, img in frames:
                any_frame = True
                yield img
            if not any_frame:
                raise InputError(f"{source} file {p} has a video stream with no frames")
            return

        native_fps = _stream_fps(stream)
        native_step = 1.0 / native_fps if native_fps else None
        step = 1.0 / fps
        tol = min(_PTS_TOLERANCE_S, 0.1 * step)
        k = 0  # next output frame index
        t0 = None  # first pts, so that output frame 0 is the first source frame
        cur = cur_t = cur_dur = None  # the frame being shown, its time and duration
        for t, dur, img in frames:
            if t is None:  # no pts: assume a constant rate after the previous frame
                t = cur_t + (cur_dur or native_step or step) if cur_t is not None else 0.0
            else:
                t0 = t if t0 is None else t0
                t -= t0
            if cur is not None:
                if t <= cur_t:  # non-increasing pts: the later frame replaces the current one
                    cur, cur_dur = img, dur or cur_dur
                    continue
                while k * step + tol < t:  # slots before this frame show the current one
                    yield cur
                    k += 1
            cur, cur_t, cur_dur = img, t, dur
        if cur is None:
            raise InputError(f"{source} file {p} has a video stream with no frames")
        # the output covers the source duration: the last frame lasts its own duration
        end_t = cur_t + (cur_dur or native_step or step)
        while k * step + tol < end_t:
            yield cur
            k += 1
    finally:
        container.close()


def read_video_frames(
    path: str | os.PathLike, fps: float | None = FPS, max_frames: int | None = None, source: str = "video"
) -> np.ndarray:
    """All (or the first `max_frames`) frames as one (N, H, W, 3) uint8 array; for tests and short clips."""
    out = []
    gen = iter_video_frames(path, fps=fps, source=source)
    try:
        for img in gen:
            out.append(img)
            if max_frames is not None and len(out) >= max_frames:
                break
    finally:
        gen.close()
    return np.stack(out)


def list_frame_files(folder: str | os.PathLike, source: str = "frames folder") -> list[Path]:
    """Image files in `folder`, in sorted(os.listdir) order like the official code."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{source} {d} does not exist or is not a folder")
    files = [d / n for n in sorted(os.listdir(d)) if n.lower().endswith(IMAGE_EXTENSIONS) and (d / n).is_file()]
    if not files:
        raise InputError(f"{source} {d} contains no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def iter_frames_folder(folder: str | os.PathLike, source: str = "frames folder") -> Iterator[np.ndarray]:
    """RGB uint8 frames of the images in `folder`, read one at a time in list_frame_files order."""
    for f in list_frame_files(folder, source=source):
        yield read_image_rgb(f, source=f"frame in {source}")


def _layout_for(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


class VideoWriter:
    """H.264 (yuv420p) mp4 writer with optional AAC audio; frames are encoded as they come.

    Writes to a hidden temporary file next to `path` and moves it onto `path` only on a clean close, so
    an exception inside the `with` block (or abort()) never leaves a half-written mp4.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = FPS,
        audio: np.ndarray | None = None,
        audio_rate: int | None = None,
        crf: int = 18,
        preset: str = "medium",
        threads: int = 1,
        overwrite: bool = True,
    ):
        self.path = Path(path)
        folder = self.path.parent
        if not folder.is_dir():
            raise InputError(f"cannot write {self.path}: output folder {folder} does not exist")
        if self.path.is_dir():
            raise InputError(f"cannot write {self.path}: it is a directory")
        if self.path.exists() and not overwrite:
            raise InputError(f"cannot write {self.path}: the file exists (overwrite is off)")
        if not os.access(folder, os.W_OK):
            raise InputError(f"cannot write {self.path}: output folder {folder} is not writable")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self._rate = Fraction(fps).limit_denominator(1001)
        self.crf = crf
        self.preset = preset
        self.threads = threads

        self._audio = None
        self._audio_rate = None
        if audio is not None:
            self._audio, self._audio_rate = self._prepare_audio(audio, audio_rate)
        self._audio_sent = 0  # samples handed to the encoder
        self._audio_done = False

        # temp files of runs killed by kill -9 (nothing can remove them then) go when the same output is written
        clean_stale_temps(self.path)
        # the pid in the name tells a later run whether its writer is still alive
        self._tmp = folder / f".{self.path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}.mp4"
        try:
            self._container = av.open(str(self._tmp), mode="w", format="mp4")
        except OSError as e:
            self._closed = True
            Path(self._tmp).unlink(missing_ok=True)
            raise disk_full_error(self.path, e) or InputError(f"cannot write {self.path}: {e}") from None
        self._vstream = None
        self._astream = None
        self._size = None  # (h, w) of the input frames
        self._pad = (0, 0)
        self._frames = 0
        self._closed = False

    # --- audio -------------------------------------------------------------------------------------
    @staticmethod
    def _prepare_audio(audio, rate: int | None):
        """-> (a reader of (channels, k) blocks, the encoder's rate). `audio`: an array, or a track with `.rate`,
        `.channels` and `.blocks()` (pdfgc.media.audio_io.AudioTrack: streamed, never held whole)."""
        if hasattr(audio, "blocks"):
            rate = int(audio.rate)
            supported = av.codec.Codec("aac", "w").audio_rates
            if supported and rate not in supported:
                target = 44100 if rate % 11025 == 0 else 48000
                return _BlockReader(_resampled(audio.blocks(), audio.channels, rate, target), audio.channels), target
            return _BlockReader(audio.blocks(), audio.channels), rate
        a, rate = VideoWriter._prepare_array(audio, rate)
        return _BlockReader(iter([a]), a.shape[0]), rate

    @staticmethod
    def _prepare_array(audio: np.ndarray, rate: int | None) -> tuple[np.ndarray, int]:
        if rate is None or rate <= 0:
            raise ValueError("audio_rate is required (a positive sample rate) when audio is given")
        a = np.asarray(audio, dtype=np.float32)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2 or not 1 <= a.shape[0] <= 8:
            raise ValueError(f"audio must be (channels, samples) or (samples,), got shape {np.shape(audio)}")
        if a.shape[1] == 0:
            raise ValueError("audio has no samples")
        rate = int(rate)
        supported = av.codec.Codec("aac", "w").audio_rates
        if supported and rate not in supported:
            # the AAC encoder only takes the standard MPEG rates: move to the nearest common one
            target = 44100 if rate % 11025 == 0 else 48000
            a = soxr.resample(a.T, rate, target, quality="HQ").T.astype(np.float32)
            rate = target
        return np.ascontiguousarray(a), rate

    def _open_streams(self, h: int, w: int) -> None:
        self._size = (h, w)
        # libx264 with yuv420p needs even width and height: pad odd sizes by one pixel (edge replicated)
        self._pad = (h % 2, w % 2)
        # one encoder thread by default: the renderer owns the cores, and x264's own threads would stall
        # torch's OpenMP workers (measured: ~10 % slower rendering on 2 cores)
        options = {"crf": str(self.crf), "preset": self.preset, "threads": str(self.threads)}
        v = self._container.add_stream("libx264", rate=self._rate, options=options)
        v.width, v.height = w + self._pad[1], h + self._pad[0]
        v.pix_fmt = "yuv420p"
        self._vstream = v
        if self._audio is not None:
            a = self._container.add_stream("aac", rate=self._audio_rate, layout=_layout_for(self._audio.channels))
            a.codec_context.open()  # frame_size is only known once the encoder is open
            self._astream = a

    def _send_audio(self, until: int) -> None:
        """Encode audio samples up to index `until` (whole encoder frames only, except at the end)."""
        a = self._astream
        if a is None or self._audio_done:
            return
        fs = a.codec_context.frame_size or 1024
        reader = self._audio
        while self._audio_sent < until:
            n = min(fs, until - self._audio_sent)
            if n < fs and not reader.ends_within(fs):
                break  # whole encoder frames only, except at the end of the track
            chunk = reader.read(n)
            if chunk.shape[1] == 0:
                break
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=_layout_for(chunk.shape[0]))
            frame.sample_rate = self._audio_rate
            frame.pts = self._audio_sent
            frame.time_base = Fraction(1, self._audio_rate)
            self._container.mux(a.encode(frame))
            self._audio_sent += chunk.shape[1]
        if reader.exhausted:
            self._container.mux(a.encode(None))  # flush as soon as the audio ends, so muxing can interleave
            self._audio_done = True

    # --- video -------------------------------------------------------------------------------------
    @property
    def frames_written(self) -> int:
        return self._frames

    def write(self, frame: np.ndarray) -> None:
        """Encode one RGB uint8 (H, W, 3) frame."""
        if self._closed:
            raise RuntimeError(f"VideoWriter for {self.path} is closed")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be uint8 (H, W, 3) RGB, got {frame.dtype} {frame.shape}")
        if self._size is None:
            self._open_streams(frame.shape[0], frame.shape[1])
        elif frame.shape[:2] != self._size:
            raise ValueError(f"frame size {frame.shape[:2]} differs from the first frame's {self._size}")
        if any(self._pad):
            frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self._frames
        vf.time_base = 1 / self._rate
        try:
            self._container.mux(self._vstream.encode(vf))
            self._frames += 1
            if self._astream is not None:
                self._send_audio(int(self._frames / self._rate * self._audio_rate))
        except OSError as e:
            self._raise_write_error(e)

    def _raise_write_error(self, e: OSError) -> None:
        """Disk full (or quota): drop the partial file and raise one InputError; other errors as they are."""
        full = disk_full_error(self.path, e)
        if full is None:
            raise e
        self.abort()
        raise full from None

    def write_batch(self, frames: np.ndarray | Iterable[np.ndarray]) -> None:
        """Encode (N, H, W, 3) uint8 RGB frames (or any iterable of frames) one by one."""
        for frame in frames:
            self.write(frame)

    # --- finishing ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush the encoders, write the whole audio, and move the finished file onto `path`."""
        if self._closed:
            return
        try:
            if self._frames == 0:
                raise InputError(f"cannot write {self.path}: no video frames were written")
            self._container.mux(self._vstream.encode(None))
            if self._astream is not None:
                self._send_audio(sys.maxsize)  # the whole audio, even past the last frame
            self._container.close()
            self._closed = True
            os.replace(self._tmp, self.path)
        except OSError as e:
            self.abort()
            self._raise_write_error(e)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discard the output: close without finishing and delete the temporary file."""
        if self._closed and not self._tmp.exists():
            return
        self._closed = True
        try:
            self._container.close()
        except Exception:  # the container may be half-initialised; the file is deleted anyway
            pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # a writer dropped without close() must not leave its temporary file behind
        try:
            if not self._closed:
                self.abort()
        except Exception:
            pass


class _BlockReader:
    """Sequential reads of n samples from an iterator of (channels, k) float32 blocks (only the current block is
    held)."""

    def __init__(self, blocks, channels: int):
        self._it, self.channels = iter(blocks), int(channels)
        self._buf = np.zeros((self.channels, 0), np.float32)
        self._done = False

    def _fill(self, n: int) -> None:
        while self._buf.shape[1] < n and not self._done:
            b = next(self._it, None)
            if b is None:
                self._done = True
            elif b.shape[-1]:
                self._buf = np.concatenate([self._buf, np.asarray(b, np.float32).reshape(self.channels, -1)], 1)

    def ends_within(self, n: int) -> bool:
        """True when fewer than n samples are left."""
        self._fill(n)
        return self._buf.shape[1] < n

    @property
    def exhausted(self) -> bool:
        self._fill(1)
        return self._buf.shape[1] == 0

    def read(self, n: int) -> np.ndarray:
        self._fill(n)
        out, self._buf = self._buf[:, :n], self._buf[:, n:]
        return np.ascontiguousarray(out)


def _resampled(blocks, channels: int, rate: int, target: int):
    """Blocks resampled to the AAC encoder's `target` rate, streamed (soxr)."""
    rs = soxr.ResampleStream(rate, target, channels, dtype="float32", quality="HQ")
    for b in blocks:
        yield rs.resample_chunk(np.ascontiguousarray(b.T), last=False).T
    yield rs.resample_chunk(np.zeros((0, channels), np.float32), last=True).T
