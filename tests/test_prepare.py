"""`pdfgc prepare` and the prepared-corpus reader, on short real clips."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from pdfgc.cli import main
from pdfgc.data.corpus import MEMBER_SUFFIXES, PreparedCorpus
from pdfgc.data.discover import discover, parse_labels, parse_shard
from pdfgc.data.prepare import PrepareConfig, merge_corpora, prepare_corpus, shot_matrices
from pdfgc.errors import InputError

from .conftest import DATA, REPO, cut_clip, need

VOX_KEY = "id00001__clipA__00001__000"
MEAD_KEY = "M003__video__front__happy__level_2__001__000"
QUIET = dict(progress=False, log=lambda m: None)


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _clips_without_location(manifest: dict) -> list[dict]:
    return [{k: v for k, v in c.items() if k not in ("shard", "members")} for c in manifest["clips"]]


def _member_bytes(corpus: PreparedCorpus, key: str) -> dict[str, bytes]:
    info = corpus.info(key)
    with open(corpus.shard_path(info), "rb") as f:
        return {s: (f.seek(o), f.read(n))[1] for s, (o, n) in info.members.items()}


# ---------------------------------------------------------------------------------------------- discovery


def test_discovery_layouts_labels_exclude_and_keys(tmp_path):
    root = tmp_path / "raw"
    _touch(root / "vox/id00017/01dfn2spqyE/00001.mp4")
    _touch(root / "mead/M005/video/left_30/Surprised/level_3/012.mp4")
    _touch(root / "mead/M005/audio/Surprised/level_3/012.m4a")  # MEAD's separate audio tree
    _touch(root / "misc/talk.mov")
    _touch(root / "misc/talk.wav")  # sidecar audio of talk.mov
    _touch(root / "misc/talk.mkv")  # same stem as talk.mov: keys must stay unique
    for i in range(3):
        _touch(root / f"frames/vox2_id01228_00309/{i:06d}.jpg")
        _touch(root / f"frames/seq/frame_{i:04d}.png")
    _touch(root / "photos/source_s1.jpg")  # unrelated photos: not a numbered sequence
    _touch(root / "photos/source_s2.jpg")
    _touch(root / "photos/portrait.png")
    _touch(root / "outputs/panels/test1.mp4")
    _touch(root / ".hidden/x.mp4")
    _touch(root / "notes/readme.txt")

    clips = discover(root, exclude=["outputs/*"])
    by = {c.source: c for c in clips}
    assert sorted(by) == ["frames/seq", "frames/vox2_id01228_00309",
                          "mead/M005/video/left_30/Surprised/level_3/012.mp4",
                          "misc/talk.mkv", "misc/talk.mov", "vox/id00017/01dfn2spqyE/00001.mp4"]
    vox = by["vox/id00017/01dfn2spqyE/00001.mp4"]
    assert (vox.layout, vox.speaker, vox.emotion, vox.kind) == ("voxceleb2", "id00017", None, "video")
    assert vox.key == "vox__id00017__01dfn2spqyE__00001"
    mead = by["mead/M005/video/left_30/Surprised/level_3/012.mp4"]
    assert ((mead.layout, mead.speaker, mead.view, mead.emotion, mead.emotion_level)
            == ("mead", "M005", "left_30", "surprised", 3))
    assert [p.name for p in mead.audio_candidates] == ["012.m4a"]
    assert [p.name for p in by["misc/talk.mov"].audio_candidates] == ["talk.wav"]
    assert by["misc/talk.mov"].speaker == "misc" and by["misc/talk.mov"].layout == "generic"
    assert by["misc/talk.mov"].key != by["misc/talk.mkv"].key and by["misc/talk.mov"].key.startswith("misc__talk_")
    assert by["frames/vox2_id01228_00309"].kind == "frames" and by["frames/vox2_id01228_00309"].speaker == "id01228"
    assert all("." not in c.key and "/" not in c.key for c in clips)
    # without the exclusion the generated panels would be taken as training data
    assert "outputs/panels/test1.mp4" in {c.source for c in discover(root)}
    assert {c.source for c in discover(root, exclude=["*/panels"])} == set(by) | set() - {"outputs/panels/test1.mp4"}
    assert not any(c.kind == "frames" for c in discover(root, frames_folders=False))
    assert parse_labels("a/b.mp4")["layout"] == "generic"
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "1", "a/b", "0/0"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)


# ---------------------------------------------------------------------------------------------- the corpus


def test_prepared_corpus_matches_the_interface(prepared_corpus, prepared_raw):
    from pdfgc.media.audio_io import load_speech
    from pdfgc.media.spectrogram import speech_windows

    corpus = PreparedCorpus(prepared_corpus)
    assert [c.key for c in corpus] == [MEAD_KEY, VOX_KEY] and len(corpus) == 2
    vox, mead = corpus.info(VOX_KEY), corpus.info(MEAD_KEY)
    assert (vox.has_audio, vox.speaker, vox.layout, vox.split) == (True, "id00001", "voxceleb2", "train")
    assert (mead.has_audio, mead.speaker, mead.emotion, mead.emotion_level) == (False, "M003", "happy", 2)
    # 1.5 s: 38 frames at 25 fps; with audio the clip ends at the last full mel window (as inference does)
    assert mead.num_frames == 38 and vox.num_frames == 35
    for info in corpus:
        clip = corpus.load_clip(info.key)
        t = info.num_frames
        assert clip.frames.shape == (t, 224, 224, 3) and clip.frames.dtype == np.uint8
        assert clip.mesh.shape == (t, 478, 3) and clip.mesh.dtype == np.float32
        assert clip.pose.shape == (t, 6) and clip.pose.dtype == np.float32
        assert clip.eye.shape == (t, 6) and clip.eye.dtype == np.float32
        assert clip.mouth_opening.shape == (t,) and clip.mouth_opening.dtype == np.float32
        assert clip.valid.shape == (t,) and clip.valid.dtype == bool and clip.valid.all()
        for a in (clip.mesh, clip.pose, clip.eye, clip.mouth_opening):
            assert np.isfinite(a).all()
        # an aligned face: eyes and mouth where the inference template puts them, open eyes, sane angles
        assert np.abs(clip.pose[:, :3]).max() < 40 and 0.15 < np.median(clip.eye[:, :2]) < 0.45
        assert (np.abs(clip.eye[:, 2:]) < 1.2).all() and (clip.mouth_opening >= 0).all()
        mouth_centre = clip.mesh[:, [13, 14, 78, 308], :2].mean(1)
        assert np.abs(mouth_centre - [112.9, 118.7]).max() < 6
        assert clip.frames[:, 60:180, 60:170].std() > 20  # a face, not a black border
        assert info.stats["valid_fraction"] == 1.0 and info.stats["aligned_by_us"]
    # the audio windows are exactly what inference computes for the clip's audio
    expected = speech_windows(load_speech(prepared_raw / "id00001/clipA/00001.mp4"))
    vox_clip = corpus.load_clip(VOX_KEY)
    assert vox_clip.mel_windows.shape == (35, 1, 80, 20) and vox_clip.mel_windows.dtype == np.float32
    np.testing.assert_array_equal(vox_clip.mel_windows, expected[:35])
    assert corpus.load_clip(MEAD_KEY).mel_windows is None
    # random access: recorded offsets are tarfile's own; single frames are read alone
    with tarfile.open(prepared_corpus / vox.shard) as tf:
        seen = {}
        for m in tf.getmembers():
            key, suffix = m.name.split(".", 1)
            assert suffix in MEMBER_SUFFIXES
            seen[(key, suffix)] = [m.offset_data, m.size]
    for info in corpus:
        for suffix, loc in info.members.items():
            assert seen[(info.key, suffix)] == loc
    np.testing.assert_array_equal(corpus.load_frames(VOX_KEY, [3, -1]), vox_clip.frames[[3, -1]])
    with pytest.raises(IndexError):
        corpus.load_frames(VOX_KEY, [35])
    streamed = {c.info.key: c for c in corpus.iter_clips(shuffle_seed=1)}
    assert sorted(streamed) == [MEAD_KEY, VOX_KEY]
    np.testing.assert_array_equal(streamed[VOX_KEY].pose, vox_clip.pose)
    assert len(PreparedCorpus(prepared_corpus, split="heldout")) == 0
    m = json.loads((prepared_corpus / "manifest.json").read_text())
    t = m["totals"]
    assert (t["clips"], t["frames"], t["clips_with_audio"], t["rejected"], t["emotions"]) == (2, 73, 1, 0, {"happy": 1})
    assert json.loads((prepared_corpus / "rejected.json").read_text()) == []


def test_shots_split_at_face_jumps_and_long_faceless_runs():
    from pdfgc.data.prepare import find_shots

    cfg = PrepareConfig()
    n = 100
    t = np.arange(n, dtype=float)
    # eyes 50 px apart drifting slowly; the mouth opens and closes fast (speech moves only the mouth)
    points = np.stack([np.stack([100 + 0.3 * t, 100 + 0.3 * t + 50, 125 + 0.3 * t], 1),
                       np.stack([100 + 0 * t, 100 + 0 * t, 160 + 30 * (t % 2)], 1)], 2)
    content = np.zeros(n, bool)
    shots, dropped, cuts = find_shots(content, points, cfg)
    assert (shots, dropped, cuts) == ([(0, n)], [], 0)
    jumped = points.copy()
    jumped[40:, :, 0] += 30  # fast but real head motion: 0.6 eye distances in one frame
    assert find_shots(content, jumped, cfg)[0] == [(0, n)]
    jumped[60:, :, 0] += 60  # the face teleports 1.2 eye distances: a jump cut (or another person)
    assert find_shots(content, jumped, cfg)[0] == [(0, 60), (60, n)]
    content[70] = True  # a content cut
    assert find_shots(content, points, cfg)[0] == [(0, 70), (70, n)]
    gaps = points.copy()
    gaps[10:15] = np.nan  # 0.2 s without a face: kept (filled from neighbours later)
    gaps[50:70] = np.nan  # 0.8 s: dropped, the clip is split there
    shots, dropped, _ = find_shots(np.zeros(n, bool), gaps, cfg)
    assert shots == [(0, 50), (70, n)] and [(d["start"], d["end"], d["code"]) for d in dropped] == [(50, 70, "no_face")]


def test_shot_alignment_equals_the_inference_aligner():
    from pdfgc.media.face import SequenceAligner
    from pdfgc.media.video import read_video_frames

    frames = read_video_frames(need(DATA / "edtalk/pose_source1.mp4"), max_frames=20)
    aligner = SequenceAligner()
    for f in frames:
        aligner.add(f)
    points = aligner.points
    np.testing.assert_array_equal(shot_matrices(points), aligner.finalize())


def test_yaw_and_roll_flip_on_a_mirrored_clip(tmp_path):
    src = need(DATA / "edtalk/pose_source1.mp4")
    raw = tmp_path / "raw"
    cut_clip(src, raw / "a/plain.mp4", 0.0, 1.2, audio=False)
    cut_clip(src, raw / "a/mirror.mp4", 0.0, 1.2, audio=False, mirror=True)
    prepare_corpus(raw, tmp_path / "out", **QUIET)
    corpus = PreparedCorpus(tmp_path / "out")
    plain, mirror = corpus.load_clip("a__plain__000").pose, corpus.load_clip("a__mirror__000").pose
    yaw, pitch, roll = plain[:, 0], plain[:, 1], plain[:, 2]
    assert np.abs(yaw).max() > 5  # the head does turn in this part of the clip
    assert np.abs(mirror[:, 0] + yaw).mean() < 0.15 * np.abs(yaw).mean() + 0.5
    assert np.corrcoef(mirror[:, 0], yaw)[0, 1] < -0.95
    assert np.abs(mirror[:, 2] + roll).mean() < 1.0
    assert np.abs(mirror[:, 1] - pitch).mean() < 2.5  # pitch stays (mediapipe is not exactly mirror-symmetric)
    assert np.abs(mirror[:, 3] + plain[:, 3]).mean() < 0.02  # tx mirrored about the crop centre


# ---------------------------------------------------------------------------------------------- resume, shards


def test_resume_skips_finished_clips_and_redoes_a_lost_one(prepared_corpus, prepared_raw, tmp_path):
    out = tmp_path / "corpus"
    shutil.copytree(prepared_corpus, out)
    before = (out / "manifest.json").read_bytes()
    again = prepare_corpus(prepared_raw, out, **QUIET)
    assert (again.processed, again.skipped) == (0, 2)
    assert (out / "manifest.json").read_bytes() == before
    # an interrupted run: one clip's completion record lost, a half-written shard and an unrecorded shard left over
    (out / "_state/clips/id00001__clipA__00001.json").unlink()
    _touch(out / "shard-000007.tar.tmp", b"partial")
    _touch(out / "shard-000005.tar", b"finished but never recorded")
    again = prepare_corpus(prepared_raw, out, **QUIET)
    assert (again.processed, again.skipped) == (1, 1)
    assert not (out / "shard-000007.tar.tmp").exists() and not (out / "shard-000005.tar").exists()
    after = json.loads((out / "manifest.json").read_text())
    assert _clips_without_location(after) == _clips_without_location(json.loads(before))
    assert after["totals"] == json.loads(before)["totals"]
    old, new = PreparedCorpus(prepared_corpus), PreparedCorpus(out)
    assert new.info(VOX_KEY).shard != old.info(VOX_KEY).shard
    for key in (VOX_KEY, MEAD_KEY):
        assert _member_bytes(new, key) == _member_bytes(old, key)


def test_other_settings_refuse_to_resume(prepared_corpus, prepared_raw, tmp_path):
    out = tmp_path / "corpus"
    shutil.copytree(prepared_corpus, out)
    with pytest.raises(InputError, match="max_seconds"):
        prepare_corpus(prepared_raw, out, PrepareConfig(max_seconds=5.0), **QUIET)


def test_kill_9_then_resume_gives_the_full_corpus(prepared_corpus, prepared_raw, tmp_path):
    out = tmp_path / "corpus"
    cmd = [sys.executable, "-m", "pdfgc.cli", "prepare", str(prepared_raw), "-o", str(out), "--quiet"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=env)
    deadline = time.monotonic() + 120
    # kill it once the first clip is in the open (temporary) shard and before the run ends
    while proc.poll() is None and time.monotonic() < deadline and not list(out.glob("*.tar.tmp")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    assert main(["prepare", str(prepared_raw), "-o", str(out), "--quiet"]) == 0
    assert not list(out.glob("*.tmp"))
    got, want = (json.loads((d / "manifest.json").read_text()) for d in (out, prepared_corpus))
    assert _clips_without_location(got) == _clips_without_location(want)
    assert len(list(out.glob("shard-*.tar"))) == 1


def test_parallel_workers_give_the_same_corpus(prepared_corpus, prepared_raw, tmp_path):
    s = prepare_corpus(prepared_raw, tmp_path / "out", workers=2, **QUIET)
    want = json.loads((prepared_corpus / "manifest.json").read_text())
    assert s.processed == 2 and _clips_without_location(s.manifest) == _clips_without_location(want)
    a, b = PreparedCorpus(tmp_path / "out"), PreparedCorpus(prepared_corpus)
    for key in (VOX_KEY, MEAD_KEY):
        assert _member_bytes(a, key) == _member_bytes(b, key)


def test_two_shards_merged_equal_one_run(prepared_corpus, prepared_raw, tmp_path):
    parts = [tmp_path / "part0", tmp_path / "part1"]
    for i, part in enumerate(parts):
        s = prepare_corpus(prepared_raw, part, shard=f"{i}/2", **QUIET)
        assert s.selected == 1 and s.manifest["totals"]["clips"] == 1
    merged = merge_corpora(parts, tmp_path / "merged", log=lambda m: None)
    want = json.loads((prepared_corpus / "manifest.json").read_text())
    assert _clips_without_location(merged) == _clips_without_location(want)
    assert merged["totals"] == want["totals"]
    a, b = PreparedCorpus(tmp_path / "merged"), PreparedCorpus(prepared_corpus)
    for key in (VOX_KEY, MEAD_KEY):
        assert _member_bytes(a, key) == _member_bytes(b, key)
    assert sorted(p.name for p in (tmp_path / "merged").glob("shard-*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    # the merged folder is a normal prepared folder: preparing into it finds everything done
    again = prepare_corpus(prepared_raw, tmp_path / "merged", **QUIET)
    assert again.processed == 0 and _clips_without_location(again.manifest) == _clips_without_location(want)
    with pytest.raises(InputError, match="not empty"):
        merge_corpora(parts, tmp_path / "merged", log=lambda m: None)


def test_long_clips_are_split_with_their_audio_windows(prepared_raw, tmp_path):
    from pdfgc.media.audio_io import load_speech
    from pdfgc.media.spectrogram import speech_windows

    raw = tmp_path / "raw"
    shutil.copytree(prepared_raw / "id00001", raw / "id00001")
    prepare_corpus(raw, tmp_path / "out", PrepareConfig(max_seconds=0.8, min_seconds=0.5), **QUIET)
    corpus = PreparedCorpus(tmp_path / "out")
    infos = list(corpus)
    assert [(c.start_frame, c.num_frames) for c in infos] == [(0, 18), (18, 17)]
    windows = speech_windows(load_speech(raw / "id00001/clipA/00001.mp4"))
    whole = np.concatenate([corpus.load_clip(c.key).mel_windows for c in infos])
    np.testing.assert_array_equal(whole, windows[:35])


# ---------------------------------------------------------------------------------------------- rejections


def _write_video(path: Path, frames, fps=25):
    from pdfgc.media.video import VideoWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=fps) as w:
        for f in frames:
            w.write(f)


def test_rejections_cuts_and_aligned_frame_folders(tmp_path):
    from pdfgc.media.video import read_video_frames

    raw = tmp_path / "raw"
    rng = np.random.default_rng(0)
    _write_video(raw / "noise.mp4", (rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(30)))
    cut_clip(need(DATA / "megactor/audio_CHTF_4.mp4"), raw / "short.mp4", 0.0, 0.3)
    _touch(raw / "corrupt.mp4", b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    # a shot change: 1.2 s of one person, then 1.2 s of another
    a = read_video_frames(need(DATA / "megactor/audio_CHTF_4.mp4"), max_frames=30)
    b = read_video_frames(need(DATA / "edtalk/pose_source1.mp4"), max_frames=30)
    import cv2
    b = np.stack([cv2.resize(f, (a.shape[2], a.shape[1])) for f in b])
    _write_video(raw / "cut.mp4", np.concatenate([a, b]))
    # the official VoxCeleb2 eye frames: already aligned 224 crops
    eye = sorted(need(DATA / "pdfgc/motions/eye/id01333_00040/images").iterdir())[:30]
    for i, f in enumerate(eye):
        shutil.copy(f, _touch(raw / f"frames/id01333_x/{i:04d}.jpg"))

    summary = prepare_corpus(raw, tmp_path / "out", **QUIET)
    rejected = {(r["source"], r["code"]) for r in json.loads((tmp_path / "out/rejected.json").read_text())}
    assert ("noise.mp4", "no_face") in rejected
    assert ("short.mp4", "too_short") in rejected
    assert ("corrupt.mp4", "unreadable") in rejected
    reasons = {r["source"]: r["reason"] for r in json.loads((tmp_path / "out/rejected.json").read_text())}
    assert "0.32 s" in reasons["short.mp4"] and "corrupt.mp4" in reasons["corrupt.mp4"]
    corpus = PreparedCorpus(tmp_path / "out")
    assert [(c.key, c.start_frame, c.num_frames) for c in corpus] == [
        ("cut__000", 0, 30), ("cut__001", 30, 30), ("frames__id01333_x__000", 0, 30)]
    assert corpus.info("cut__000").stats["cuts_in_source"] == 1
    # each shot was aligned on its own: both faces sit on the template
    for key in ("cut__000", "cut__001"):
        mouth = corpus.load_clip(key).mesh[:, [13, 14, 78, 308], :2].mean(1)
        assert np.abs(mouth - [112.9, 118.7]).max() < 6
    fr = corpus.load_clip("frames__id01333_x__000")
    assert not fr.info.stats["aligned_by_us"] and fr.info.speaker == "id01333" and not fr.info.has_audio
    original = cv2.cvtColor(cv2.imread(str(eye[7])), cv2.COLOR_BGR2RGB)
    assert np.abs(fr.frames[7].astype(int) - original).mean() < 2  # taken as is (JPEG q95 round trip)
    t = summary.manifest["totals"]
    assert t["rejected_by_code"] == {"no_face": 1, "too_short": 1, "unreadable": 1}


def test_faces_below_the_minimum_size_are_rejected(prepared_raw, tmp_path):
    s = prepare_corpus(prepared_raw, tmp_path / "out", PrepareConfig(min_face_px=400), **QUIET)
    rejected = json.loads((tmp_path / "out/rejected.json").read_text())
    assert s.manifest["totals"]["clips"] == 0 and [r["code"] for r in rejected] == ["face_too_small"] * 2
    assert all("too small" in r["reason"] and "400 px" in r["reason"] for r in rejected)


# ---------------------------------------------------------------------------------------------- command line


def test_cli_errors(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["prepare", str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) == 2
    assert "no clips found" in capsys.readouterr().err
    _touch(tmp_path / "raw/a.mp4")
    _touch(tmp_path / "file")
    assert main(["prepare", str(tmp_path / "raw"), "-o", str(tmp_path / "file")]) == 2
    assert "output folder" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path / "raw"), "-o", str(tmp_path / "out"), "--shard", "2/2"]) == 2
    assert "--shard" in capsys.readouterr().err
    assert main(["prepare", "-o", str(tmp_path / "out")]) == 2
    assert "RAW_DIR" in capsys.readouterr().err
