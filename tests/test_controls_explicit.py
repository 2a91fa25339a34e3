"""Explicit controls: curves, parsers, fitted mappings (fit, storage, model binding) and the pipeline's use of them."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from pdfgc.controls.explicit import (
    BlinkControl,
    EmotionControl,
    GazeControl,
    LipControl,
    PoseControl,
    coerce_control,
    interpolate,
    parse_spans,
    parse_times,
    parse_weights,
)
from pdfgc.errors import CheckpointError, InputError
from pdfgc.families.pdfgc.controls.mapping import (
    BLINK_INPUTS,
    GAZE_INPUTS,
    ControlMappings,
    ControlSamples,
    LinearMap,
    find_mapping,
    fit_mappings,
    mapping_path_for,
    model_fingerprint,
    ridge_fit,
)
from pdfgc.families.pdfgc.family import plan_styles
from pdfgc.families.pdfgc.model import BLINK_DIMS, GAZE_DIMS
from pdfgc.pipeline import AnimateOptions

POSE = ("yaw", "pitch", "roll", "tx", "ty", "scale")


# ---------------------------------------------------------------------------------------------- curves
def test_interpolation_values_at_given_times():
    t, y = [0.0, 2.0, 4.0], [0.0, 20.0, 10.0]
    q = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 9.0])
    assert np.allclose(interpolate(t, y, q, "linear"), [0, 0, 5, 10, 20, 15, 10, 10])
    # smooth = smoothstep per segment: s=0.25 -> 0.15625 of the way, half way at the middle, held outside
    assert np.allclose(interpolate(t, y, q, "smooth"), [0, 0, 20 * 0.15625, 10, 20, 15, 10, 10])
    assert np.allclose(interpolate(t, y, q, "step"), [0, 0, 0, 0, 20, 20, 10, 10])
    cub = interpolate(t, y, np.linspace(0, 4, 401), "cubic")
    assert np.allclose(interpolate(t, y, [0, 2, 4], "cubic"), y)      # through the keys
    assert cub.max() <= 20 + 1e-9 and cub.min() >= -1e-9               # monotone pieces: no overshoot
    mono = interpolate([0, 1, 2], [0, 10, 20], np.linspace(0, 2, 201), "cubic")
    assert np.all(np.diff(mono) >= -1e-12)


def test_pose_keyframes_curves_at_25fps():
    p = PoseControl.parse("0:yaw=0,pitch=0; 2:yaw=20; linear")
    c = p.curves(75)
    assert set(c) == {"yaw", "pitch"}
    assert c["yaw"][0] == 0 and c["yaw"][25] == pytest.approx(10) and c["yaw"][50] == 20 and c["yaw"][74] == 20
    assert np.all(c["pitch"] == 0)
    assert PoseControl.parse("0:yaw=0; 50f:yaw=20").curves(51)["yaw"][25] == pytest.approx(10)  # smooth midpoint
    const = PoseControl(yaw=-20, roll=5).curves(10)
    assert np.all(const["yaw"] == -20) and np.all(const["roll"] == 5) and "pitch" not in const
    assert PoseControl.parse("yaw=20; absolute").relative is False


def test_pose_curve_files(tmp_path):
    csv = tmp_path / "head.csv"
    csv.write_text("time,yaw,pitch\n0,0,0\n1,10,\n2,20,5\n")
    c = PoseControl(curve=str(csv), interpolation="linear").curves(51)
    assert c["yaw"][[0, 25, 50]] == pytest.approx([0, 10, 20])
    assert c["pitch"][[0, 25, 50]] == pytest.approx([0, 2.5, 5])      # the empty cell is no key
    fcsv = tmp_path / "frames.csv"
    fcsv.write_text("frame,roll\n0,0\n50,10\n")
    assert PoseControl.parse(str(fcsv)).curves(51)["roll"][50] == pytest.approx(10)
    js = tmp_path / "head.json"
    js.write_text(json.dumps({"keyframes": [{"t": 0, "yaw": 0}, {"t": 1, "yaw": -10}]}))
    assert PoseControl(curve=str(js), interpolation="linear").curves(26)["yaw"][25] == pytest.approx(-10)
    cols = tmp_path / "cols.json"
    cols.write_text(json.dumps({"time": [0, 1], "pitch": [0, 4]}))
    assert PoseControl(curve=str(cols), interpolation="linear").curves(26)["pitch"][25] == pytest.approx(4)
    bad = tmp_path / "bad.csv"
    bad.write_text("time,nod\n0,1\n")
    with pytest.raises(InputError, match="bad.csv.*unknown column 'nod'"):
        PoseControl(curve=str(bad)).curves(3)
    bad.write_text("yaw\n1\n")
    with pytest.raises(InputError, match="time column"):
        PoseControl(curve=str(bad)).curves(3)
    bad.write_text("time,yaw\n0,abc\n")
    with pytest.raises(InputError, match="row 1 yaw"):
        PoseControl(curve=str(bad)).curves(3)
    with pytest.raises(InputError, match="no such file"):
        PoseControl(curve=str(tmp_path / "missing.csv")).curves(3)


def test_blink_schedule_gives_closures_at_the_right_frames():
    b = BlinkControl(times=[1.0, 2.52], duration=0.2)
    c = b.closure(100)
    assert c[25] == 1.0 and c[63] == 1.0                     # 2.52 s = frame 63
    assert np.all(c[:23] == 0) and np.all(c[29:60] == 0) and np.all(c[67:] == 0)
    assert c[24] < 1 and c[26] < 1 and c[24] > 0 and c[26] > c[27] > 0   # close over 2 frames, reopen over 3
    assert b.events(100) == [(24, 26), (62, 64)]
    o = BlinkControl(times=[1.0], openness=0.8).openness_curve(50)
    assert o[0] == pytest.approx(0.8) and o[25] == 0
    assert BlinkControl(times=[10.0]).blink_times(100) == []  # past a --max-frames cut: dropped (past the audio:
    # refused by check_options)


def test_blink_rate_jitter_is_seeded_and_natural():
    a = BlinkControl(rate=20, seed=3).blink_times(25 * 60)
    assert a == BlinkControl(rate=20, seed=3).blink_times(25 * 60)
    assert a != BlinkControl(rate=20, seed=4).blink_times(25 * 60)
    assert 10 <= len(a) <= 32                                 # ~20 in a minute
    gaps = np.diff(a)
    assert gaps.min() >= 0.3 - 1e-9 and gaps.std() > 0.3     # jittered, never overlapping
    regular = np.diff(BlinkControl(rate=20, jitter=0).blink_times(25 * 60))
    assert np.allclose(regular, 3.0, atol=0.05)
    assert BlinkControl(rate=0).blink_times(1000) == []


def test_gaze_lip_emotion_curves():
    assert np.all(GazeControl(camera=True).curves(5) == 0)
    g = GazeControl.parse("0:camera; 2:h=0.5,v=-0.2")
    c = g.curves(51)
    assert c[0] == pytest.approx([0, 0]) and c[50] == pytest.approx([0.5, -0.2]) and c[25, 0] == pytest.approx(0.25)
    assert GazeControl.parse("30deg,0deg").curves(1)[0, 0] == pytest.approx(0.8 * 0.5)
    w = LipControl(mute=[(2.0, 3.0)], ramp=0.08).mute_weights(100)
    assert np.all(w[50:76] == 1) and w[49] == pytest.approx(0.5) and w[76] == pytest.approx(0.5)  # 2.0 .. 3.0 s
    assert np.all(w[:49] == 0) and np.all(w[77:] == 0)
    assert EmotionControl.parse("happy:0.6,sad:0.2").weights() == {"happy": 0.6, "sad": 0.2}
    assert EmotionControl(label="Happiness", intensity=0.5).weights() == {"happy": 0.5}
    assert EmotionControl(label="neutral").weights() == {}


# ---------------------------------------------------------------------------------------------- parsers
def test_parsers_accept_good_specs():
    assert parse_times("1, 4.5 ,50f") == [1.0, 2.0, 4.5]
    assert parse_spans("2.0-3.5, 5s-6s") == [(2.0, 3.5), (5.0, 6.0)]
    assert parse_weights("happy:0.6,surprised:0.2") == {"happy": 0.6, "surprise": 0.2}
    assert PoseControl.parse("yaw=20,pitch=-5").yaw == 20
    assert BlinkControl.parse("1,4.5").times == [1.0, 4.5]
    b = BlinkControl.parse("rate=15,seed=3,duration=0.25,openness=0.8")
    assert (b.rate, b.seed, b.duration, b.openness) == (15, 3, 0.25, 0.8)
    assert GazeControl.parse("camera").camera and GazeControl.parse("h=0.3").horizontal == 0.3
    assert EmotionControl.parse("ref=clip.mp4").reference == "clip.mp4"
    lc = LipControl.parse("intensity=0.5; mute=2-3.5")
    assert lc.intensity == 0.5 and lc.mute == [(2.0, 3.5)]
    assert GazeControl.looks_like_spec("0.5,-0.2") and GazeControl.looks_like_spec("camera")
    assert not GazeControl.looks_like_spec("eyes.mp4")


@pytest.mark.parametrize("kind,spec,match", [
    ("pose", "yaw=abc", "'abc' is not a number"),
    ("pose", "nod=3", "unknown name 'nod'"),
    ("pose", "0:yaw=1; 0:yaw=2", "same time"),
    ("pose", "yaw=200", "out of range"),
    ("pose", "0 yaw=1", "unknown name '0 yaw'"),
    ("blink", "1,x", "'x' is not a number"),
    ("blink", "rate=-1", "out of range"),
    ("blink", "speed=3", "unknown name 'speed'"),
    ("gaze", "0.5", "expected 'camera'"),
    ("gaze", "5,0", "out of range"),
    ("emotion", "happy:x", "not a number"),
    ("emotion", "happy:3", "out of range"),
    ("emotion", "12:0.5", "not an emotion label"),
    ("lip", "3-2", "ends before it starts"),
    ("lip", "mute=abc", "not a span"),
    ("lip", "loud=1", "unknown name 'loud'"),
])
def test_parsers_refuse_bad_specs(kind, spec, match):
    with pytest.raises(InputError, match=match):
        coerce_control(kind, spec)


def test_controls_round_trip_through_json():
    opt = AnimateOptions(pose_control=PoseControl.parse("0:yaw=0; 2:yaw=20"), blink_control=BlinkControl(rate=12),
                         gaze_control=GazeControl(horizontal=0.4, vertical=-0.1),
                         emotion_control=EmotionControl(blend={"happy": 0.6, "sad": 0.2}),
                         lip_control=LipControl(mute=[(1.0, 2.0)]))
    d = json.loads(json.dumps(dataclasses.asdict(opt)))
    for kind in ("pose", "blink", "gaze", "emotion", "lip"):
        back = coerce_control(kind, d[f"{kind}_control"])
        assert back == getattr(opt, f"{kind}_control")
    with pytest.raises(InputError, match="unknown field 'bogus'"):
        coerce_control("pose", {"bogus": 1})


# ---------------------------------------------------------------------------------------------- mappings
def _synthetic_samples(n=600, seed=0, heldout=True):
    rng = np.random.default_rng(seed)
    pose_label = np.column_stack([rng.uniform(-30, 30, n), rng.uniform(-15, 15, n), rng.uniform(-10, 10, n),
                                  rng.normal(0, 0.02, n), rng.normal(0, 0.02, n), rng.normal(0.3, 0.02, n)])
    W = rng.normal(size=(6, 6)) / np.array([30, 15, 10, 0.02, 0.02, 0.02])[:, None]
    b = rng.normal(size=6)
    openness = np.clip(rng.uniform(0, 1.2, (n, 2)), 0, None)
    gaze = rng.uniform(-0.5, 0.5, (n, 2))
    Wb, bb = rng.normal(size=(2, 4)), rng.normal(size=4)
    Wg, bg = rng.normal(size=(2, 2)), rng.normal(size=2)
    eye = np.zeros((n, 6))
    eye[:, list(BLINK_DIMS)] = openness @ Wb + bb
    eye[:, list(GAZE_DIMS)] = gaze @ Wg + bg
    labels = np.array(["happy", "sad", "neutral"])[rng.integers(0, 3, n)]
    centres = {k: rng.normal(size=30) * 3 for k in ("happy", "sad", "neutral")}
    emotion = np.stack([centres[k] for k in labels]) + rng.normal(0, 0.3, (n, 30))
    mouth_opening = rng.uniform(0, 0.2, n)
    closed = rng.normal(size=500)
    mouth = closed + mouth_opening[:, None] * 5 * rng.normal(size=500) + rng.normal(0, 0.01, (n, 500))
    clip = np.arange(n) // 50
    s = ControlSamples(pose_label=pose_label, openness=openness, gaze=gaze, mouth_opening=mouth_opening,
                       emotion_label=labels, pose_code=pose_label @ W + b + rng.normal(0, 1e-3, (n, 6)),
                       eye_code=eye + rng.normal(0, 1e-3, (n, 6)), emotion_code=emotion, mouth_code=mouth,
                       clip=clip, heldout=(clip == clip.max()) if heldout else np.zeros(n, bool))
    truth = dict(W=W, b=b, Wb=Wb, bb=bb, Wg=Wg, bg=bg, centres=centres, closed=closed)
    return s, truth


def test_ridge_recovers_a_linear_map_and_ignores_constant_inputs():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=200), np.full(200, 3.0)])
    y = x[:, :1] @ np.array([[2.0, -1.0]]) + [0.5, 1.5]
    w, b = ridge_fit(x, y, alpha=1e-9)
    assert np.allclose(w, [[2.0, -1.0], [0, 0]], atol=1e-6) and np.allclose(x @ w + b, y, atol=1e-6)


@pytest.mark.parametrize("heldout", [True, False])
def test_mapping_fit_recovers_a_known_linear_map(heldout):
    s, truth = _synthetic_samples(heldout=heldout)
    m = fit_mappings(s, "abc", "synthetic", alpha=1e-9)
    assert np.allclose(m.pose.weight, truth["W"], rtol=1e-2, atol=1e-2 * np.abs(truth["W"]).max())
    assert np.allclose(m.pose.bias, truth["b"], atol=0.05)
    assert np.allclose(m.blink.weight, truth["Wb"], atol=1e-2) and m.blink.dims == list(BLINK_DIMS)
    assert np.allclose(m.gaze.weight, truth["Wg"], atol=1e-2) and m.gaze.dims == list(GAZE_DIMS)
    acc = m.pose.accuracy
    assert acc["split"] == ("heldout" if heldout else "5-fold by clip")
    assert acc["mae"]["yaw"] < 0.1 and acc["r2"]["yaw"] > 0.999     # degrees, read back through the map
    assert set(m.emotion_labels) == {"happy", "sad", "neutral"}
    for k, c in truth["centres"].items():
        assert np.allclose(m.emotion_means[k], c, atol=0.1)
    assert np.allclose(m.emotion_neutral, truth["centres"]["neutral"], atol=0.1)
    assert m.emotion_accuracy["nearest_mean_accuracy"] == 1.0
    # the closed mouth: the mean code of the 5 % least open frames, near the true closed code
    assert np.abs(m.mouth_closed - truth["closed"]).mean() < 0.05
    assert m.mouth_accuracy["frames"] == pytest.approx(0.05 * len(s), abs=2)


def test_mapping_save_load_and_model_binding(tmp_path, tiny):
    from pdfgc.families.pdfgc.model import PDFGC
    from pdfgc.families.pdfgc.testing import tiny_model

    s, _ = _synthetic_samples(n=200)
    m = fit_mappings(s, model_fingerprint(tiny), tiny.config.name)
    path = m.save(tmp_path / "m.controls.json")
    back = ControlMappings.load(path)
    assert back.to_dict() == json.loads(path.read_text())
    assert np.allclose(back.pose.weight, m.pose.weight) and back.emotion_labels == m.emotion_labels
    assert np.allclose(back.mouth_closed, m.mouth_closed)
    back.check_model(tiny)
    other = tiny_model(1)
    assert model_fingerprint(other) != model_fingerprint(tiny)
    with pytest.raises(CheckpointError, match="fitted for another model.*fit-controls"):
        back.check_model(other)
    # found beside the weights file; refused beside other weights
    w = tiny.save_pretrained(tmp_path / "tiny.safetensors")
    assert mapping_path_for(w) == tmp_path / "tiny.controls.json"
    loaded = PDFGC.from_pretrained(w)
    assert find_mapping(loaded) is None
    m.save(mapping_path_for(w))
    assert find_mapping(loaded).model_sha256 == m.model_sha256
    w2 = other.save_pretrained(tmp_path / "other.safetensors")
    m.save(mapping_path_for(w2))
    with pytest.raises(CheckpointError, match="another model"):
        find_mapping(PDFGC.from_pretrained(w2))
    (tmp_path / "junk.json").write_text("{\"format\": \"x\"}")
    with pytest.raises(InputError, match="junk.json: not a pdfgc control mapping"):
        ControlMappings.load(tmp_path / "junk.json")
    with pytest.raises(InputError, match="no such file"):
        find_mapping(loaded, tmp_path / "nope.json")


# ---------------------------------------------------------------------------------------------- pipeline
@pytest.fixture(scope="module")
def synthetic_mapping(tiny, tmp_path_factory):
    rng = np.random.default_rng(5)
    m = ControlMappings(
        model_sha256=model_fingerprint(tiny), model_name=tiny.config.name,
        pose=LinearMap(list(POSE), list(range(6)), rng.normal(size=(6, 6)) * 0.05, rng.normal(size=6)),
        blink=LinearMap(list(BLINK_INPUTS), list(BLINK_DIMS), rng.normal(size=(2, 4)), rng.normal(size=4)),
        gaze=LinearMap(list(GAZE_INPUTS), list(GAZE_DIMS), rng.normal(size=(2, 2)), rng.normal(size=2)),
        emotion_means={k: rng.normal(size=30) for k in ("happy", "sad", "neutral")},
        emotion_neutral=rng.normal(size=30), mouth_closed=rng.normal(size=500))
    return str(m.save(tmp_path_factory.mktemp("mapping") / "synthetic.controls.json")), m


@pytest.fixture(scope="module")
def portrait():
    return (np.random.default_rng(0).random((224, 224, 3)) * 255).astype(np.uint8)


def _base_options(path):
    return AnimateOptions(duration=2.0, progress=False, align="never", control_mapping=path)


def _changed_slices(model, a, b):
    sl = model.layout.slices()
    d = (plan_styles(model, a, slice(0, a.num_frames)) - plan_styles(model, b, slice(0, b.num_frames))).abs().sum(0)
    return {k for k, v in sl.items() if float(d[v].sum()) > 0}


def test_each_control_changes_only_its_own_code(tiny_pipe, synthetic_mapping, portrait):
    path, m = synthetic_mapping
    model = tiny_pipe.model
    opt = _base_options(path)
    base = tiny_pipe.plan(portrait, None, opt)
    cfg = model.config

    yaw = tiny_pipe.plan(portrait, None, opt, pose_control=PoseControl(yaw=20))
    assert _changed_slices(model, base, yaw) == {"pose"}
    est0, est1 = m.pose.inverse(base.pose.double().numpy()), m.pose.inverse(yaw.pose.double().numpy())
    assert np.allclose(est1 - est0, [20, 0, 0, 0, 0, 0], atol=1e-4)      # relative: +20 deg on the portrait's pose
    absolute = tiny_pipe.plan(portrait, None, opt, pose_control=PoseControl(yaw=-10, relative=False))
    est2 = m.pose.inverse(absolute.pose.double().numpy())
    assert np.allclose(est2[:, 0], -10, atol=1e-4) and np.allclose(est2[:, 1:], est0[:, 1:], atol=1e-4)

    blink = tiny_pipe.plan(portrait, None, opt, blink_control=BlinkControl(times=[1.0]))
    assert _changed_slices(model, base, blink) == {"eye"}
    changed = (blink.eye - base.eye).abs().sum(0) > 0
    assert changed.tolist() == [d in BLINK_DIMS for d in range(6)]
    closed = cfg.eye_scale * m.blink(np.zeros((1, 2)))[0]
    opened = cfg.eye_scale * m.blink(np.ones((1, 2)))[0]
    assert np.allclose(blink.eye[25, list(BLINK_DIMS)].numpy(), closed, atol=1e-5)
    assert np.allclose(blink.eye[10, list(BLINK_DIMS)].numpy(), opened, atol=1e-5)

    gaze = tiny_pipe.plan(portrait, None, opt, gaze_control="0.5,-0.2")
    assert _changed_slices(model, base, gaze) == {"eye"}
    assert ((gaze.eye - base.eye).abs().sum(0) > 0).tolist() == [d in GAZE_DIMS for d in range(6)]
    assert np.allclose(gaze.eye[:, list(GAZE_DIMS)].numpy(), cfg.eye_scale * m.gaze(np.array([[0.5, -0.2]])), atol=1e-5)

    emo = tiny_pipe.plan(portrait, None, opt, emotion_control="happy:0.5")
    assert _changed_slices(model, base, emo) == {"emotion"}
    want = cfg.emotion_scale * (m.emotion_neutral + 0.5 * (m.emotion_means["happy"] - m.emotion_neutral))
    assert np.allclose(emo.emotion.numpy(), want[None], atol=1e-5)

    mute = tiny_pipe.plan(portrait, None, opt, lip_control=LipControl(mute=[(0.8, 1.2)]))
    assert _changed_slices(model, base, mute) == {"mouth"}
    closed_mouth = cfg.mouth_scale * m.mouth_closed
    assert np.allclose(mute.mouth[20:31].numpy(), closed_mouth[None], atol=1e-5)   # 0.8 s .. 1.2 s
    assert torch.equal(mute.mouth[:17], base.mouth[:17]) and torch.equal(mute.mouth[34:], base.mouth[34:])
    half = tiny_pipe.plan(portrait, None, opt, lip_control=LipControl(intensity=0.5))
    assert np.allclose(half.mouth.numpy(), (closed_mouth + 0.5 * (base.mouth.numpy() - closed_mouth)), atol=1e-5)


def test_controls_need_a_mapping_and_known_labels(tiny_pipe, synthetic_mapping, portrait):
    opt = AnimateOptions(duration=1.0, progress=False, align="never")
    for kw in (dict(pose_control="yaw=20"), dict(blink_control="1"), dict(gaze_control="camera"),
               dict(emotion_control="happy")):
        with pytest.raises(InputError, match="needs a control mapping.*pdfgc fit-controls"):
            tiny_pipe.plan(portrait, None, opt, **kw)
    # lips work without a mapping (closed = the portrait's own mouth)
    p = tiny_pipe.plan(portrait, None, opt, lip_control="mute=0-1")
    assert torch.allclose(p.mouth[5], p.mouth[15])
    with pytest.raises(InputError, match="'angry' is not in the fitted mapping.*happy, neutral, sad"):
        tiny_pipe.plan(portrait, None, _base_options(synthetic_mapping[0]), emotion_control="angry")


def test_cli_animate_with_controls(tmp_path, tiny, synthetic_mapping, portrait, capsys):
    import av
    import cv2

    from pdfgc.cli import main

    w = tiny.save_pretrained(tmp_path / "tiny.safetensors")
    ControlMappings.load(synthetic_mapping[0]).save(mapping_path_for(w))   # found beside the weights
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), portrait[..., ::-1])
    out = tmp_path / "out.mp4"
    rc = main(["animate", "--weights", str(w), "--portrait", str(img), "--duration", "1.2", "--align", "never",
               "--yaw", "15", "--blink-times", "0.5", "--gaze", "camera", "--emotion-label", "happy:0.4",
               "--mute", "0.2-0.6", "-o", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    with av.open(str(out)) as f:
        assert f.streams.video[0].frames == 30
    rc = main(["animate", "--weights", str(w), "--portrait", str(img), "--duration", "1", "--align", "never",
               "--emotion-label", "joyful", "-o", str(tmp_path / "x.mp4"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "pdfgc: error: emotion label 'joyful' is not in the fitted mapping" in err
    assert not (tmp_path / "x.mp4").exists()
    rc = main(["animate", "--weights", str(w), "--portrait", str(img), "--duration", "1", "--align", "never",
               "--pose-keyframes", "0:yaw=x", "-o", str(tmp_path / "x.mp4"), "--quiet"])
    assert rc == 2 and "'x' is not a number" in capsys.readouterr().err


def test_fit_controls_on_a_prepared_corpus(prepared_corpus, tmp_path, tiny, capsys):
    from pdfgc.cli import main

    w = tiny.save_pretrained(tmp_path / "tiny.safetensors")
    rc = main(["fit-controls", "--weights", str(w), "--data", str(prepared_corpus), "--frames-per-clip", "12",
               "--threads", "2", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    m = ControlMappings.load(mapping_path_for(w))
    assert m.model_sha256 == model_fingerprint(tiny)
    assert m.info["clips"] == 2 and m.info["frames"] >= 24
    assert m.pose.accuracy["split"] == "2-fold by clip" and "yaw" in m.pose.accuracy["mae"]
    assert "happy" in m.emotion_labels            # the MEAD clip's own label
    assert m.mouth_closed.shape == (500,) and m.blink.dims == list(BLINK_DIMS)
    assert not (tmp_path / "tiny.controls.json.cache").exists()   # the resume cache is removed after success
    assert f"control mapping for {tiny.config.name}" in capsys.readouterr().out


def test_a_physical_pose_code_needs_no_mapping(portrait):
    import math

    from pdfgc.families.pdfgc.testing import tiny_model
    from pdfgc.pipeline import TalkingHeadPipeline

    model = tiny_model(0)
    model.config.pose_code_units = "yaw, pitch, roll in radians; tx, ty, scale as prepared"
    pipe = TalkingHeadPipeline(model, device="cpu", threads=torch.get_num_threads())
    opt = AnimateOptions(duration=0.4, progress=False, align="never")
    base = pipe.plan(portrait, None, opt)
    turned = pipe.plan(portrait, None, opt, pose_control="yaw=20,roll=-5")
    want = torch.tensor([20 * math.pi / 180, 0, -5 * math.pi / 180, 0, 0, 0])
    assert torch.allclose(turned.pose - base.pose, want.expand_as(base.pose).to(base.pose.dtype), atol=1e-6)
    absolute = pipe.plan(portrait, None, opt, pose_control=PoseControl(pitch=10, relative=False))
    assert torch.allclose(absolute.pose[:, 1], torch.tensor(10 * math.pi / 180, dtype=base.pose.dtype), atol=1e-6)
    assert torch.equal(absolute.pose[:, [0, 2, 3, 4, 5]], base.pose[:, [0, 2, 3, 4, 5]])


def test_emotion_reference_clip_holds_its_mean_expression(tiny_pipe, synthetic_mapping, portrait, tmp_path):
    import cv2

    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), portrait[..., ::-1])
    opt = _base_options(synthetic_mapping[0])
    base = tiny_pipe.plan(portrait, None, opt)    # emotion "still": the portrait's own expression
    same = tiny_pipe.plan(portrait, None, opt, emotion_control=EmotionControl(reference=str(ref)))
    assert torch.allclose(same.emotion, base.emotion, atol=1e-5)
    neutral = torch.from_numpy(synthetic_mapping[1].emotion_neutral).float() * tiny_pipe.model.config.emotion_scale
    half = tiny_pipe.plan(portrait, None, opt, emotion_control=EmotionControl(reference=str(ref), intensity=0.5))
    assert torch.allclose(half.emotion, (neutral + base.emotion) / 2, atol=1e-5)
    with pytest.raises(InputError, match="emotion reference .*no such file"):
        tiny_pipe.plan(portrait, None, opt, emotion_control=EmotionControl(reference=str(tmp_path / "no.mp4")))
