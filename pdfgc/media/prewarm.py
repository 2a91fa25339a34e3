"""The driving clips' face meshes measured in a child process while `pdfgc animate` starts.

Before its first frame the main command's critical path is the driving clips' face meshes (the pose clip's 361
frames on one mediapipe tracker, ~2 s of CPU), and they cannot start before `pdfgc animate` has imported torch and
the model (~1.5 s on one core of two): nothing the job does runs before that. The clips need neither: a child process
(`python -m pdfgc.media.prewarm`), started once the options are checked, decodes the audio's length, reads the
clips as the pipeline will and measures their meshes through the driving cache (`driving_cache.clip_meshes`, the
same code the job runs), on the core the parent's imports leave idle. A thread would not do: an import holds the GIL
for most of its second, and the tracker's per-frame hand-overs wait for it (`benchmarks/results/speed_s30.md`).

The child writes each clip's cache entry and then a line naming the clip; the job, when it reaches that clip
(`wait_for`), waits for the line and reads the entry: a hit, the tracker's output bit for bit as the cache gives it.
Whatever the child gets wrong (another frame count, a failed read, a crash) is a miss, and the job measures as
without it; a clip the child has not started when the job reaches it is the job's (the child is told to skip it).
Only for a command-line run with the driving cache on, the mesh-warp model, more than one core and one of them idle
(the load average; `start`); ``PDFGC_PREWARM=0`` turns it off, ``1`` on whatever the load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ENV = "PDFGC_PREWARM"
MESHWARP_FORMAT = "pdfgc-meshwarp"  # families/meshwarp/params.FORMAT (not imported here: it imports torch)

_active: Prewarm | None = None


def _key(path) -> str:
    return os.path.abspath(os.fspath(path))


class Prewarm:
    """The running child: `wait(path)` until it has kept that clip's meshes (or ended), or, for a clip it has not
    started, tells it to leave that clip to the job; `close()` ends it."""

    def __init__(self, proc: subprocess.Popen, keys: set[str]):
        self.proc, self.keys, self.ended = proc, keys, False
        self.started, self.done, self.left = set(), set(), set()
        self._cond = threading.Condition()
        threading.Thread(target=self._read, name="pdfgc-prewarm", daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:
                word, _, key = line.rstrip("\n").partition(" ")
                with self._cond:
                    {"start": self.started, "done": self.done}.get(word, set()).add(key)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def wait(self, path) -> None:
        key = _key(path)
        with self._cond:
            if key not in self.keys or key in self.left:
                return
            if key not in self.started and not self.ended:
                # not started yet (the child measures one clip at a time): the job measures it itself, now, and the
                # child skips it (had it just started it, both measure: the same entry, written twice)
                self.left.add(key)
                try:
                    self.proc.stdin.write(f"leave {key}\n")
                    self.proc.stdin.flush()
                except (OSError, ValueError):
                    pass
                return
            self._cond.wait_for(lambda: key in self.done or self.ended)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass


def wait_for(path) -> None:
    """Before measuring a clip: if a child is measuring it, wait until it has kept its meshes (or ended)."""
    if _active is not None:
        _active.wait(path)


def _sources(opt) -> dict[str, str]:
    """The job's clip sources by factor, in `TalkingHeadPipeline._plan`'s order (`options.factor_sources`)."""
    from ..options import factor_sources, is_special_source

    return {f: str(s) for f, s in factor_sources(opt).items() if not is_special_source(s)}


def _is_meshwarp(weights, official) -> bool:
    from ..weights import default_weights_path, weights_format

    path = weights or default_weights_path()
    if official or path is None:
        return False
    try:
        return weights_format(path) == MESHWARP_FORMAT
    except Exception:  # noqa: BLE001 - the job reports an unreadable weights file
        return False


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _idle_core() -> bool:
    """Whether a core is idle for the child: the 1-minute load average below the number of cores. The child costs
    ~0.8 s of CPU the job does not (its interpreter and imports, the clips read twice); on a machine whose cores are
    all busy that is wall time too (2 cores, other jobs at load 3-4: 0.5-1.9 s slower; at load 1-2: 0.7 s faster;
    benchmarks/results/speed_s34.md)."""
    try:
        return os.getloadavg()[0] < _cores()
    except (AttributeError, OSError):  # no load average here
        return True


def _site_dirs() -> set[str]:
    """The interpreter's site-packages (an installed pdfgc is found there anyway; put first on PYTHONPATH they would
    shadow the standard library)."""
    import site

    dirs = [*getattr(site, "getsitepackages", list)(), getattr(site, "getusersitepackages", str)()]
    return {str(Path(d).resolve()) for d in dirs if d}


def start(opt, audio, weights=None, official=None) -> Prewarm | None:
    """Start the child for `pdfgc animate`'s options (checked) and audio, when it can help; None otherwise.
    ``PDFGC_PREWARM``: unset or ``auto`` when a core is idle (`_idle_core`), ``1`` (or ``verbose``: the child's
    timeline on stderr) whatever the load, ``0`` never."""
    global _active
    mode = os.environ.get(ENV, "auto")
    if mode == "0" or not getattr(opt, "cache", True) or audio is None:
        return None
    if mode not in ("1", "verbose") and not _idle_core():
        return None
    if (opt.threads or _cores()) < 2 or _cores() < 2:
        return None
    sources = _sources(opt)
    if not sources or not _is_meshwarp(weights, official):
        return None
    spec = {
        "t0": time.time(),
        "audio": os.fspath(audio),
        "sources": sources,
        "max_frames": opt.max_frames,
        "align": opt.align,
        "driving_mode": opt.driving_mode,
        "driving_skip": opt.driving_skip,
    }
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    if root not in _site_dirs():  # a source tree (PYTHONPATH, a checkout): first, so the child runs this same code
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    verbose = os.environ.get(ENV) == "verbose"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pdfgc.media.prewarm", json.dumps(spec)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if verbose else subprocess.DEVNULL,
            text=True,
        )
    except OSError:
        return None
    _active = Prewarm(proc, {_key(s) for s in sources.values()})
    return _active


def stop() -> None:
    """End the child (a job that failed before its clips leaves it running otherwise)."""
    global _active
    if _active is not None:
        _active.close()
        _active = None


def _run(spec: dict) -> None:
    """The child: the pipeline's steps 3-4 (the audio's length, the clips opened and their used frames) as
    `TalkingHeadPipeline._plan` takes them, then each clip's meshes through the driving cache."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    from ..official_rules import frame_indices
    from .audio_io import decode_speech
    from .driving import open_driving
    from .driving_cache import clip_meshes
    from .spectrogram import num_output_frames

    t0, verbose = float(spec.get("t0", time.time())), os.environ.get(ENV) == "verbose"
    cv2.setNumThreads(1)
    max_frames = spec["max_frames"]
    keep = None if max_frames is None else (int(max_frames) + 8) * 640 / 16000  # pipeline.load_speech
    n = decode_speech(spec["audio"], max_seconds=keep)[2]
    num_frames = num_output_frames(n)
    if max_frames is not None:
        num_frames = min(num_frames, max_frames)
    need = num_frames + spec["driving_skip"]
    clips, used = {}, {}
    last_use = {key: factor for factor, key in spec["sources"].items()}

    left, lock = set(), threading.Lock()

    def read_leaves():  # the job's "leave KEY" lines: clips it measures itself (not started here yet)
        for line in sys.stdin:
            word, _, key = line.rstrip("\n").partition(" ")
            if word == "leave":
                with lock:
                    left.add(key)

    threading.Thread(target=read_leaves, daemon=True).start()

    def measure(key):
        with lock:
            if _key(key) in left:
                return
            print(f"start {_key(key)}", flush=True)
        try:
            clip = clips[key]
            uniq = clip.unique_index()
            todo = sorted({int(uniq[i]) for i in used[key]})
            clip_meshes(clip, todo, cache=True)
        finally:  # kept, or failed: the job's own measure then finds no entry
            print(f"done {_key(key)}", flush=True)
        if verbose:  # PDFGC_PREWARM=verbose: the child's timeline on stderr
            print(f"pdfgc prewarm: {key} kept at {time.time() - t0:.2f} s", file=sys.stderr, flush=True)

    # each clip measured as soon as its last factor is read, while the next one is read; one tracker at a time (the
    # parent's imports hold the other core; the pose clip, the job's critical path, comes first in the README's order)
    with ThreadPoolExecutor(1) as pool:
        for factor, key in spec["sources"].items():
            if key not in clips:
                clip_need = need if spec["driving_mode"] != "strict" else None
                clips[key] = open_driving(key, clip_need, spec["align"], False, role=f"{factor} source")
            clip = clips[key]
            skip = 0 if clip.kind == "image" else spec["driving_skip"]
            idx = frame_indices(clip.num_frames, num_frames, spec["driving_mode"], skip)
            used.setdefault(key, set()).update(int(i) for i in idx)
            if last_use[key] == factor:
                pool.submit(measure, key)


if __name__ == "__main__":
    _run(json.loads(sys.argv[1]))
