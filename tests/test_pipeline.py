"""The pipeline end to end on tiny random-weight networks and real media."""

import av
import numpy as np
import pytest
import torch

from pdfgc.errors import InputError
from pdfgc.media import preprocess as pp
from pdfgc.media.video import read_image_rgb
from pdfgc.official_rules import smooth_box3, smooth_mouth
from pdfgc.pipeline import AnimateOptions

from .conftest import DATA, FIXTURE, need, write_wav16

PD = DATA / "pdfgc"
POSE = PD / "motions/pose/681600002"
EXP = PD / "motions/exp/vox2_id01228_00309"
EYE = PD / "motions/eye/id01333_00040/images"
ANNE = PD / "anne.png"
CLIP = FIXTURE / "clip2s_16k.wav"


def _write_wav(path, samples, rate=16000):
    return write_wav16(path, samples, rate)


def _probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        a = c.streams.audio[0] if c.streams.audio else None
        adur = float(a.duration * a.time_base) if a is not None and a.duration else None
        return frames, v.codec_context.width, v.codec_context.height, v.codec_context.name, adur


@pytest.fixture(scope="module")
def full_plan(tiny_pipe):
    opt = AnimateOptions(pose=str(POSE), emotion=str(EXP), eyes=str(EYE), progress=False)
    return tiny_pipe.plan(need(ANNE), need(CLIP), opt)


def test_plan_follows_each_source(tiny_pipe, full_plan):
    plan, m = full_plan, tiny_pipe.model
    assert plan.num_frames == 47 and plan.mel_windows.shape == (47, 1, 80, 20)
    torch.testing.assert_close(plan.mouth, smooth_mouth(plan.audio_mouth_raw * 1.5))
    key, idx = plan.factor_index["pose"]
    assert list(idx[:3]) == [2, 3, 4]  # the official code drops the first two driving frames
    raw = plan.motion_raw[key]
    torch.testing.assert_close(plan.pose, smooth_box3(raw.pose[torch.from_numpy(idx)]))
    # eye folder has 101 frames: loops after 99 usable frames, emotion folder (31) after 29
    _, eidx = plan.factor_index["emotion"]
    assert eidx[29] == 2 and eidx[28] == 30
    # codes equal a direct encoder call on the chosen crops
    with torch.inference_mode():
        crops = plan.panels["emotion"][0][[eidx[5]]]
        direct = m.motion(pp.to_tensor(np.asarray(crops)))
    torch.testing.assert_close(plan.emotion[5:6], direct.emotion * 1.2, atol=1e-5, rtol=1e-4)
    styles = tiny_pipe.family.styles(plan, slice(0, 47))
    assert styles.shape == (47, m.layout.dim)


def test_a_plan_edited_in_place_renders_the_edit(tiny_pipe, full_plan):
    """The README's plan/render example: `plan()` hands out ordinary tensors (not inference tensors, which refuse
    in-place edits outside inference mode), and `render` draws what the caller wrote into them."""
    import copy

    plan = copy.copy(full_plan)
    plan.pose = full_plan.pose.clone()
    for name in ("mouth", "emotion", "eye", "pose"):
        assert not getattr(full_plan, name).is_inference(), name
    before = np.concatenate([im.numpy() for _, im in tiny_pipe.render(plan, start=0, stop=2)])
    plan.pose[:, 0] += 0.5
    after = np.concatenate([im.numpy() for _, im in tiny_pipe.render(plan, start=0, stop=2)])
    assert not np.array_equal(before, after)


def test_still_off_and_intensity(tiny_pipe):
    opt = AnimateOptions(lips="off", pose="off", eyes="still", emotion="still", emotion_intensity=2.4,
                         progress=False)
    plan = tiny_pipe.plan(ANNE, CLIP, opt)
    assert torch.count_nonzero(plan.mouth) == 0 and torch.count_nonzero(plan.pose) == 0
    with torch.inference_mode():
        still = tiny_pipe.model.motion(pp.to_tensor(pp.official_crop_zoom(read_image_rgb(ANNE))))
    torch.testing.assert_close(plan.emotion, (still.emotion * 2.4).expand(47, -1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(plan.eye, (still.eye * 1.2).expand(47, -1), atol=1e-5, rtol=1e-4)


def test_blink_and_gaze_from_separate_sources(tiny_pipe):
    opt = AnimateOptions(blink=str(EYE), gaze=str(POSE), eyes="off", progress=False)
    plan = tiny_pipe.plan(ANNE, CLIP, opt)
    bkey, bidx = plan.factor_index["blink"]
    gkey, gidx = plan.factor_index["gaze"]
    blink = plan.motion_raw[bkey].eye[torch.from_numpy(bidx)] * 1.2
    gaze = plan.motion_raw[gkey].eye[torch.from_numpy(gidx)] * 1.2
    torch.testing.assert_close(plan.eye[:, [0, 1, 4, 5]], blink[:, [0, 1, 4, 5]])
    torch.testing.assert_close(plan.eye[:, [2, 3]], gaze[:, [2, 3]])


def test_one_source_for_several_factors_is_encoded_once(tiny_pipe):
    opt = AnimateOptions(pose=str(POSE), eyes=str(POSE), emotion=str(POSE), progress=False)
    plan = tiny_pipe.plan(ANNE, CLIP, opt)
    assert len(plan.motion_raw) == 1


def test_held_frames_are_encoded_once(tiny_pipe, monkeypatch):
    """The expression folders repeat one frame: only distinct frames reach the motion encoder."""
    calls = []
    motion = tiny_pipe.model.motion
    orig = motion.forward
    monkeypatch.setattr(motion, "forward", lambda x, mouth=False: calls.append(x.shape[0]) or orig(x, mouth))
    tiny_pipe.plan(ANNE, CLIP, AnimateOptions(emotion=str(EXP), eyes="off", progress=False))
    assert sum(calls) <= 3  # one distinct expression frame (+ the portrait for 'still' pose)


def test_animate_writes_mp4_with_sound(tiny_pipe, tmp_path):
    out = tmp_path / "a.mp4"
    res = tiny_pipe(ANNE, audio=CLIP, output=out, pose=str(POSE), emotion=str(EXP), eyes=str(EYE), progress=False)
    assert res.output == out and res.num_frames == 47
    frames, w, h, codec, adur = _probe(out)
    assert (frames, w, h, codec) == (47, 224, 224, "h264")
    assert adur == pytest.approx(2.0, abs=0.1)
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]  # no temporary left behind


def test_panels_layout_is_the_official_strip(tiny_pipe, tmp_path):
    out = tmp_path / "p.mp4"
    tiny_pipe(ANNE, audio=CLIP, output=out, pose=str(POSE), emotion=str(EXP), eyes=str(EYE), layout="panels",
              max_frames=10, progress=False)
    frames, w, h, _, _ = _probe(out)
    assert (frames, w, h) == (10, 1120, 224)


@pytest.mark.parametrize("mode,expect", [("loop", [2, 3, 4, 2, 3]), ("hold", [2, 3, 4, 4, 4]),
                                         ("pingpong", [2, 3, 4, 3, 2])])
def test_short_driving_folder_modes(tiny_pipe, tmp_path, mode, expect):
    d = tmp_path / "short"
    d.mkdir()
    for i, f in enumerate(sorted(POSE.iterdir())[:5]):
        (d / f"{i:03d}.jpg").write_bytes(f.read_bytes())
    plan = tiny_pipe.plan(ANNE, CLIP, AnimateOptions(pose=str(d), driving_mode=mode, progress=False))
    assert list(plan.factor_index["pose"][1][:5]) == expect


# ---- bad input: one clear message, no partial output ------------------------------------------------------------
def _fails(tiny_pipe, tmp_path, match, **kw):
    out = tmp_path / "out.mp4"
    args = dict(audio=CLIP, progress=False)
    args.update(kw)
    portrait = args.pop("portrait", ANNE)
    with pytest.raises(InputError, match=match):
        tiny_pipe(portrait, output=out, **args)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".mp4" or ".tmp" in p.name]


def test_silent_audio(tiny_pipe, tmp_path):
    _fails(tiny_pipe, tmp_path, "silent", audio=_write_wav(tmp_path / "silent.wav", np.zeros(32000)))


def test_zero_length_audio(tiny_pipe, tmp_path):
    _fails(tiny_pipe, tmp_path, "zero.wav", audio=_write_wav(tmp_path / "zero.wav", np.zeros(0)))


def test_unreadable_audio(tiny_pipe, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_text("not audio")
    _fails(tiny_pipe, tmp_path, "bad.mp3", audio=bad)


def test_too_short_audio(tiny_pipe, tmp_path):
    t = np.arange(1000) / 16000
    _fails(tiny_pipe, tmp_path, "too short", audio=_write_wav(tmp_path / "short.wav", 0.3 * np.sin(2000 * t)))


def test_driving_folder_with_too_few_frames(tiny_pipe, tmp_path):
    d = tmp_path / "two"
    d.mkdir()
    for i, f in enumerate(sorted(POSE.iterdir())[:2]):
        (d / f"{i}.jpg").write_bytes(f.read_bytes())
    _fails(tiny_pipe, tmp_path, r"two.*2 frame\(s\); at least 3", pose=str(d))
    _fails(tiny_pipe, tmp_path, "are needed", pose=str(POSE), driving_mode="strict",
           audio=need(PD / "audio_longer.mp3"))


def test_unreadable_driving_frame(tiny_pipe, tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    for i, f in enumerate(sorted(POSE.iterdir())[:6]):
        (d / f"{i}.jpg").write_bytes(f.read_bytes())
    (d / "3.jpg").write_bytes(b"garbage")
    _fails(tiny_pipe, tmp_path, r"3\.jpg", pose=str(d))


def test_missing_output_folder(tiny_pipe, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        tiny_pipe(ANNE, audio=CLIP, output=tmp_path / "nope" / "x.mp4", progress=False)


def test_missing_driving_source(tiny_pipe, tmp_path):
    _fails(tiny_pipe, tmp_path, "no such file", pose=str(tmp_path / "missing.mp4"))


def test_silent_audio_is_fine_when_lips_do_not_follow_it(tiny_pipe, tmp_path):
    wav = _write_wav(tmp_path / "s.wav", np.zeros(32000))
    plan = tiny_pipe.plan(ANNE, wav, AnimateOptions(lips="off", progress=False))
    assert plan.num_frames == 47 and torch.count_nonzero(plan.mouth) == 0


def test_audio_formats_give_the_official_frame_count():
    """15 s mp3 at 44.1 kHz stereo -> 372 frames, as the authors' own outputs; an mp4's audio track works too."""
    from pdfgc.pipeline import load_audio_windows

    windows, wav = load_audio_windows(need(PD / "audio_longer.mp3"))
    assert windows.shape == (372, 1, 80, 20) and windows.min() >= 0 and windows.max() <= 1
    windows, wav = load_audio_windows(need(DATA / "megactor/audio_ENTF_2.mp4"))
    from pdfgc.media.spectrogram import num_output_frames
    assert windows.shape[0] == num_output_frames(len(wav)) > 50


def test_frame_count_formula_matches_windows():
    from pdfgc.media.spectrogram import num_output_frames, speech_windows

    rng = np.random.default_rng(0)
    for n in (3200, 3201, 16000, 32000, 32159, 47999):
        assert speech_windows(0.1 * rng.standard_normal(n)).shape[0] == num_output_frames(n)
    assert num_output_frames(32000) == 47 and num_output_frames(240000) == 372


@pytest.mark.parametrize("lips", ["still", "off"])
def test_no_audio_still_or_off_lips_with_duration(tiny_pipe, lips):
    plan = tiny_pipe.plan(ANNE, None, AnimateOptions(lips=lips, duration=1.0, progress=False))
    assert plan.num_frames == 25 and plan.mouth.shape == (25, 500)
    assert (torch.count_nonzero(plan.mouth) == 0) == (lips == "off")
    with pytest.raises(InputError, match="--duration"):
        tiny_pipe.plan(ANNE, None, AnimateOptions(lips=lips, progress=False))


def test_max_frames_cuts_the_sound_track_with_the_video(tiny_pipe, tmp_path):
    long_audio = DATA / "pdfgc" / "audio_longer.mp3"   # 15 s, 44.1 kHz stereo: the sound is streamed from it
    out = tmp_path / "cut.mp4"
    tiny_pipe(ANNE, audio=need(long_audio), output=out, max_frames=25, progress=False)
    frames, _, _, _, adur = _probe(out)
    assert frames == 25 and adur == pytest.approx(1.0, abs=0.05)   # not the 15 s of the file


def test_speech_keeps_only_what_max_frames_needs_and_its_windows_match():
    from pdfgc.pipeline import load_speech

    path = need(DATA / "edtalk" / "pose_source2.mp4")   # 60 s of 48 kHz stereo sound
    full, cut = load_speech(path), load_speech(path, max_frames=50)
    assert cut.wav16k.size < 3 * 16000 < full.wav16k.size            # ~2.3 s kept, not 60 s
    assert cut.num_frames == full.num_frames and cut.gain == pytest.approx(full.gain, rel=1e-9)
    np.testing.assert_array_equal(cut.wav16k, full.wav16k[:cut.wav16k.size])
    from pdfgc.media.spectrogram import speech_windows, speech_windows_range
    w = speech_windows(full.wav16k)[:50]
    # the same samples through two float32 code paths (whole file vs a range): equal up to FFT rounding, which
    # differs between CPUs (937 of 80,000 values by 1.2e-7 on another 2-core machine), not bit for bit
    np.testing.assert_allclose(speech_windows_range(cut.wav16k, 0, 50, cut.gain), w, rtol=0, atol=1e-5)
