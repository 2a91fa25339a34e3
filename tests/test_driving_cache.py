"""The driving clips' kept face meshes (`pdfgc.media.driving_cache`): a hit gives the codes and frames a miss
gives, bit for bit; a corrupt, pickled or other-crops entry is measured again; a one-byte change of the clip misses;
`--no-cache` / `AnimateOptions(cache=False)` writes nothing."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
import torch

from pdfgc.fileio import cache_dir
from pdfgc.media import mesh as MESH
from pdfgc.media.driving import open_driving
from pdfgc.options import AnimateOptions

from .conftest import DATA, need

ANNE = DATA / "pdfgc" / "anne.png"
POSE = DATA / "pdfgc" / "motions" / "pose" / "681600002"  # 224 px frames (no alignment), none held


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("PDFGC_CACHE", str(root))
    return root / "driving"


@pytest.fixture()
def clip_dir(tmp_path):
    """The first 12 frames of a real clip, as a folder of its own."""
    d = tmp_path / "clip"
    d.mkdir()
    for f in sorted(need(POSE).iterdir())[:12]:
        shutil.copy(f, d / f.name)
    return d


@pytest.fixture(scope="module")
def pipe():
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    return TalkingHeadPipeline(load_model(), device="cpu", threads=1)


@pytest.fixture()
def trackers(monkeypatch):
    """How many tracking-mode graphs (`_clip_meshes`' measuring) were started."""
    calls = []
    real = MESH.FaceMeshDetector

    def counted(*a, **kw):
        if kw.get("static_image_mode") is False:
            calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(MESH, "FaceMeshDetector", counted)
    return calls


def _meshes(pipe, path, used, cache=True):
    clip = open_driving(path, None, "auto", False)
    return pipe.family._clip_meshes(clip, used, cache=cache)


def _plan(pipe, clip, **kw):
    opt = AnimateOptions(
        lips="still", duration=0.4, emotion=str(clip), pose=str(clip), eyes=str(clip), progress=False, **kw
    )
    return pipe.plan(need(ANNE), None, opt)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PDFGC_CACHE", str(tmp_path / "a"))
    assert cache_dir("driving") == tmp_path / "a" / "driving"
    monkeypatch.delenv("PDFGC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir("driving") == tmp_path / "x" / "pdfgc" / "driving"


def test_hit_gives_the_codes_and_frames_of_a_miss(pipe, clip_dir, cache, trackers):
    miss = _plan(pipe, clip_dir)
    assert len(trackers) == 1 and len(list(cache.glob("*.npz"))) == 1
    hit = _plan(pipe, clip_dir)
    assert len(trackers) == 1, "the second job measured the clip again"
    off = _plan(pipe, clip_dir, cache=False)
    assert len(trackers) == 2
    for other in (hit, off):
        for k in ("mouth", "emotion", "eye", "pose"):
            assert torch.equal(getattr(miss, k), getattr(other, k)), k
        for key, codes in miss.motion_raw.items():
            for k in ("mouth", "emotion", "eye", "pose"):
                assert torch.equal(getattr(codes, k), getattr(other.motion_raw[key], k)), k
    frames = [np.concatenate([im.numpy() for _, im in pipe.render(p, start=0, stop=3)]) for p in (miss, hit)]
    assert np.array_equal(*frames)


def test_a_shorter_request_is_served_from_a_longer_entry(pipe, clip_dir, cache, trackers):
    full = _meshes(pipe, clip_dir, list(range(10)))
    part = _meshes(pipe, clip_dir, list(range(6)))
    assert len(trackers) == 1
    fresh = _meshes(pipe, clip_dir, list(range(6)), cache=False)
    assert np.array_equal(part[:6], fresh[:6]) and np.array_equal(part[:6], full[:6])
    _meshes(pipe, clip_dir, list(range(12)))  # longer: measured, and kept in the entry's place
    assert len(trackers) == 3 and len(list(cache.glob("*.npz"))) == 1


def test_a_corrupt_or_pickled_entry_is_measured_again(pipe, clip_dir, cache, trackers, caplog):
    used = list(range(8))
    first = _meshes(pipe, clip_dir, used)
    (entry,) = cache.glob("*.npz")
    good = entry.read_bytes()
    bad_entries = {
        "garbage": b"not an npz" + good[:100],
        "truncated": good[: len(good) // 2],
    }
    for name, data in bad_entries.items():
        entry.write_bytes(data)
        with caplog.at_level(logging.WARNING, logger="pdfgc"):
            caplog.clear()
            again = _meshes(pipe, clip_dir, used)
        assert np.array_equal(first, again, equal_nan=True), name
        assert sum("driving cache: ignoring" in r.getMessage() for r in caplog.records) == 1, name
        assert entry.read_bytes() == good, name  # rewritten with the measured meshes
    # an entry that needs pickle (an object array) is never unpickled
    with np.load(entry, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert all(a.dtype.kind != "O" for a in arrays.values())
    arrays["meshes"] = np.array([object()], dtype=object)
    with open(entry, "wb") as f:
        np.savez(f, **arrays)
    with caplog.at_level(logging.WARNING, logger="pdfgc"):
        caplog.clear()
        again = _meshes(pipe, clip_dir, used)
    assert np.array_equal(first, again, equal_nan=True)
    assert any("driving cache: ignoring" in r.getMessage() for r in caplog.records)
    assert len(trackers) == 4


def test_other_crops_under_the_same_name_are_measured_again(pipe, clip_dir, cache, trackers, monkeypatch):
    used = list(range(6))
    first = _meshes(pipe, clip_dir, used)
    (entry,) = cache.glob("*.npz")
    with np.load(entry, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["digests"][3] ^= 1  # the kept crop 3 is not the one asked for
    arrays["meshes"][3] += 1.0
    with open(entry, "wb") as f:
        np.savez(f, **arrays)
    again = _meshes(pipe, clip_dir, used)
    assert len(trackers) == 2 and np.array_equal(first, again, equal_nan=True)


def test_a_one_byte_change_of_the_clip_misses(pipe, clip_dir, cache, trackers):
    used = list(range(6))
    _meshes(pipe, clip_dir, used)
    last = sorted(clip_dir.iterdir())[-1]  # a frame not even used: the key is the whole folder's content
    last.write_bytes(last.read_bytes() + b"\0")  # after the JPEG's end: the same pixels, other bytes
    _meshes(pipe, clip_dir, used)
    assert len(trackers) == 2 and len(list(cache.glob("*.npz"))) == 2


def test_no_cache_writes_nothing(pipe, clip_dir, cache, trackers):
    from pdfgc.cli import build_parser
    from pdfgc.option_fields import options_from_args

    args = build_parser("animate").parse_args(["animate", "--portrait", str(ANNE), "-o", "x.mp4", "--no-cache"])
    assert options_from_args(args, AnimateOptions)["cache"] is False
    assert AnimateOptions().cache is True
    _plan(pipe, clip_dir, cache=False)
    _plan(pipe, clip_dir, cache=False)
    assert len(trackers) == 2 and not cache.exists()


def test_an_unwritable_cache_is_no_error(pipe, clip_dir, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("PDFGC_CACHE", str(blocker))
    with caplog.at_level(logging.WARNING, logger="pdfgc"):
        meshes = _meshes(pipe, clip_dir, list(range(4)))
    assert np.isfinite(meshes).all()
    assert any("driving cache: could not write" in r.getMessage() for r in caplog.records)


def test_prune_keeps_the_newest_entries_under_the_cap(tmp_path):
    from pdfgc.media.driving_cache import prune

    paths = []
    for i in range(4):  # mtimes 1000..4000: entry 0 the least recently used
        p = tmp_path / f"{i}.npz"
        p.write_bytes(b"x" * 100)
        os.utime(p, (1000.0 * (i + 1), 1000.0 * (i + 1)))
        paths.append(p)
    (tmp_path / "other.txt").write_bytes(b"y" * 1000)  # not an entry: never touched
    prune(tmp_path, keep=paths[0], limit=250)  # the kept one (100) + the newest (100); the next would make 300
    assert [p.exists() for p in paths] == [True, False, False, True]
    assert (tmp_path / "other.txt").exists()
    prune(tmp_path, limit=0)
    assert not list(tmp_path.glob("*.npz"))


def test_max_bytes_reads_the_environment(monkeypatch, caplog):
    from pdfgc.media.driving_cache import MAX_MB, max_bytes

    monkeypatch.delenv("PDFGC_CACHE_MAX_MB", raising=False)
    assert max_bytes() == MAX_MB << 20
    monkeypatch.setenv("PDFGC_CACHE_MAX_MB", "0.5")
    assert max_bytes() == 1 << 19
    monkeypatch.setenv("PDFGC_CACHE_MAX_MB", "-3")
    assert max_bytes() == 0
    monkeypatch.setenv("PDFGC_CACHE_MAX_MB", "lots")
    with caplog.at_level(logging.WARNING, logger="pdfgc"):
        assert max_bytes() == MAX_MB << 20
    assert "PDFGC_CACHE_MAX_MB" in caplog.text


def test_a_write_evicts_the_least_recently_used_and_a_hit_refreshes(pipe, clip_dir, cache, trackers, monkeypatch):
    cache.mkdir(parents=True)
    old = cache / ("0" * 32 + ".npz")
    old.write_bytes(b"z" * 4096)
    os.utime(old, (1000.0, 1000.0))
    monkeypatch.setenv("PDFGC_CACHE_MAX_MB", "0")  # only the entry just written stays
    _meshes(pipe, clip_dir, list(range(4)))
    (entry,) = cache.glob("*.npz")
    assert not old.exists() and entry != old
    os.utime(entry, (1000.0, 1000.0))
    _meshes(pipe, clip_dir, list(range(4)))
    assert len(trackers) == 1 and entry.stat().st_mtime > 1000.0


# ---- the clips' meshes measured in a child process while `pdfgc animate` starts (pdfgc.media.prewarm) ----------
AUDIO = DATA / "pdfgc" / "audio_longer.mp3"


def test_prewarm_child_keeps_what_the_job_reads(pipe, clip_dir, cache, trackers, monkeypatch):
    from pdfgc.media import prewarm

    monkeypatch.setenv("PDFGC_PREWARM", "1")  # whatever the machine's load

    opt = AnimateOptions(pose=str(clip_dir), emotion=str(clip_dir), max_frames=8, progress=False)
    off = pipe.plan(need(ANNE), str(need(AUDIO)), opt.__class__(**{**opt.__dict__, "cache": False}))
    assert len(trackers) == 1
    child = prewarm.start(opt, str(AUDIO))
    assert child is not None
    try:
        assert child.proc.wait(timeout=300) == 0  # the child ends first: the job must find its entry
        assert len(list(cache.glob("*.npz"))) == 1
        warmed = pipe.plan(need(ANNE), str(AUDIO), opt)
    finally:
        prewarm.stop()
    assert len(trackers) == 1, "the job measured a clip the child had kept"
    for k in ("mouth", "emotion", "eye", "pose"):
        assert torch.equal(getattr(off, k), getattr(warmed, k)), k


def test_prewarm_waits_for_a_started_clip_and_takes_back_the_others(tmp_path):
    import subprocess
    import sys

    from pdfgc.media import prewarm

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    # a stand-in child: starts A, then reports what the job told it, then ends A
    script = f"import sys\nprint('start {a}', flush=True)\nline = sys.stdin.readline()\nprint('done {a}', flush=True)\n"
    script += f"assert line == 'leave {b}\\n', line\n"
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = prewarm.Prewarm(proc, {a, b})
    with child._cond:
        assert child._cond.wait_for(lambda: a in child.started or child.ended, timeout=60)
    child.wait(b)  # not started: left to the job at once (the stand-in ends A only once told)
    assert b in child.left
    child.wait(a)  # started: until its line
    assert a in child.done
    child.wait(str(tmp_path / "other"))  # not the child's
    assert proc.wait(timeout=60) == 0  # the stand-in was told to leave B
    child.close()


def test_prewarm_a_failed_child_leaves_the_clip_to_the_job(tmp_path):
    import subprocess
    import sys

    from pdfgc.media import prewarm

    a = str(tmp_path / "a")
    proc = subprocess.Popen(
        [sys.executable, "-c", f"print('start {a}', flush=True)\nraise SystemExit(1)"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    child = prewarm.Prewarm(proc, {a})
    with child._cond:
        assert child._cond.wait_for(lambda: a in child.started or child.ended, timeout=60)
    child.wait(a)  # started: until the child ended without keeping it
    assert child.ended and a not in child.done
    child.close()


def test_prewarm_only_when_it_can_help(monkeypatch):
    from pdfgc.media import prewarm

    readme = AnimateOptions(pose="p", emotion="e", eyes="i")
    assert prewarm._sources(readme) == {"pose": "p", "blink": "i", "gaze": "i", "emotion": "e"}
    assert prewarm._sources(AnimateOptions(eyes="i", blink="auto")) == {"gaze": "i"}
    assert prewarm.start(AnimateOptions(pose="p", cache=False), "a.mp3") is None
    assert prewarm.start(AnimateOptions(pose="p"), None) is None
    assert prewarm.start(AnimateOptions(), "a.mp3") is None  # no clip
    assert prewarm.start(AnimateOptions(pose="p", threads=1), "a.mp3") is None
    monkeypatch.setenv("PDFGC_PREWARM", "0")
    assert prewarm.start(AnimateOptions(pose="p"), "a.mp3") is None
    monkeypatch.delenv("PDFGC_PREWARM")
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # every core busy: no child
    assert prewarm.start(AnimateOptions(pose="p"), "a.mp3") is None
