"""Emotion labels of the mesh-warp family (issue 20): measured shapes, FACS directions, kept apart from speech."""
from __future__ import annotations

import numpy as np
import pytest

from pdfgc.evaluation import signals as S
from pdfgc.families.meshwarp import codes as C
from pdfgc.families.meshwarp import emotion as E

from .conftest import DATA, need

ANNE = DATA / "pdfgc" / "anne.png"


@pytest.fixture(scope="module")
def shipped():
    from pdfgc.families.meshwarp.params import DEFAULT_PATH, load_params
    if not DEFAULT_PATH.exists():
        pytest.skip("no shipped meshwarp parameters")
    return load_params()


def _region(params, label, level=1.0) -> dict:
    v = E.region_vector(E.label_mesh_offset(params, label, level), params.mean_shape)
    return dict(zip(E.region_names(), v))


def test_label_levels_from_clip_names():
    assert E.label_level("M030_front_sad_level3_001.mp4") == 3
    assert E.label_level("spectre/samples__MEAD__M003_level_1_happy_024.mp4") == 1
    assert E.label_level("EAMM/test__crop__M030_sad_3_001.mp4") == 3
    assert E.label_level("EAMM/test__video__sad.mp4") is None


def test_level_zero_changes_nothing(anne_mesh, shipped):
    pc = C.measure(anne_mesh, shipped, reference=None, smooth=False)
    for label in shipped.emotion_shapes:
        out = C.apply_emotion_label(pc, shipped, label, intensity=0.0)
        np.testing.assert_allclose(out.emotion, pc.emotion, atol=1e-6)
        np.testing.assert_allclose(out.mouth, pc.mouth, atol=1e-6)
        np.testing.assert_allclose(out.eye, pc.eye, atol=1e-6)
        np.testing.assert_allclose(C.compose(anne_mesh, pc, out, shipped)[0], anne_mesh, atol=1e-4)


def test_labels_move_their_facs_regions(shipped):
    """FACS prototypes (canonical y is down, so 'up' is a negative 'down'; face height ~2.8 units): surprise AU1+2
    whole brows up, AU5 lids wider; sad AU1+4: the inner brows up against the outer ones (the measured mean has the
    inner ends level: one actor raises them, the other lowers the whole brow) and drawn together, lids lower;
    angry AU4+7: brows down and together, lids narrowed; happy AU6+12: corners up and out, cheeks up."""
    s, sad, ang, hap = (_region(shipped, k) for k in ("surprise", "sad", "angry", "happy"))
    lid = {k: float(shipped.emotion_lid(k)[0]) for k in ("surprise", "sad", "angry", "happy")}
    assert s["inner_brow down"] < -0.02 and s["outer_brow down"] < -0.02 and lid["surprise"] > 0.05
    assert sad["inner_brow down"] - sad["outer_brow down"] < -0.01 and sad["inner_brow out"] < -0.01
    assert lid["sad"] < -0.1
    assert ang["inner_brow down"] > 0.02 and ang["mid_brow down"] > 0.02 and ang["inner_brow out"] < 0
    assert lid["angry"] < -0.1
    assert hap["mouth_corner down"] < -0.03 and hap["mouth_corner out"] > 0.03 and hap["cheek down"] < -0.005
    # none of them opens the mouth (the lips' midline stays: speech alone moves it)
    for r in (s, sad, ang, hap):
        assert abs(r["upper_lip down"]) < 0.005 and abs(r["lower_lip down"]) < 0.005


def test_a_label_does_not_change_the_speech_jaw_opening(anne_mesh, shipped):
    pc = C.measure(anne_mesh, shipped, reference=None, smooth=False)
    rng = np.random.default_rng(0)
    # speech: mouth codes that open the mouth by different amounts (the first components are the jaw/lip gap)
    speech = C.MeshCodes.concat([pc] * 6)
    speech.mouth[:, :3] += rng.normal(0, 1, (6, 3)).astype(np.float32) * np.array([1.0, 0.6, 0.3], np.float32)
    speech.mouth[:, 0] = pc.mouth[0, 0] + np.linspace(0, 2.0, 6)
    plain = S.mouth_opening(C.compose(anne_mesh, pc, speech, shipped))
    assert plain.max() > 3 * plain.min() + 0.02      # the speech really opens the mouth
    for label in [k for k in shipped.emotion_shapes if k != "neutral"]:
        with_label = S.mouth_opening(C.compose(anne_mesh, pc, C.apply_emotion_label(speech, shipped, label), shipped))
        np.testing.assert_allclose(with_label, plain, rtol=0.03, atol=0.002, err_msg=label)
        assert np.abs(E.opening_constraints(shipped) @ shipped.emotion_mouth(label)).max() < 1e-6


def test_blends_are_linear_in_the_shapes(anne_mesh, shipped):
    pc = C.measure(anne_mesh, shipped, reference=None, smooth=False)
    half = C.apply_emotion_label(pc, shipped, "happy", 0.5)
    full = C.apply_emotion_label(pc, shipped, "happy", 1.0)
    np.testing.assert_allclose(half.emotion - pc.emotion, 0.5 * (full.emotion - pc.emotion), atol=1e-5)
    np.testing.assert_allclose(half.mouth - pc.mouth, 0.5 * (full.mouth - pc.mouth), atol=1e-5)
    # the model's blend: the weighted sum of the labels' codes
    from pdfgc.controls.explicit import EmotionControl
    from pdfgc.options import AnimateOptions
    from pdfgc.pipeline import TalkingHeadPipeline
    pipe = TalkingHeadPipeline.from_default()
    face = pipe.load_portrait(str(need(ANNE)))

    def code(ctl):
        opt = AnimateOptions(progress=False, lips="still", duration=0.08, emotion_control=ctl)
        return pipe.plan(face, None, opt).emotion[0].numpy()
    blend = code(EmotionControl(blend={"happy": 0.6, "sad": 0.2}))
    np.testing.assert_allclose(blend, 0.6 * code(EmotionControl(label="happy")) + 0.2 * code(
        EmotionControl(label="sad")), atol=1e-5)
    assert np.abs(code(EmotionControl(label="angry", intensity=0.0))).max() == 0


class _Clip:
    def __init__(self, identity, label, canon):
        self.identity, self.label, self.canon = identity, label, canon
        self.valid = np.ones(len(canon), bool)
        self.ref = 0


def test_fit_labels_measures_the_change_from_the_neutral_clip(anne_mesh, shipped):
    """Synthetic people: a label clip = the neutral clip's speech + raised inner brows + a dropped jaw. The fit
    gives the brows back at their measured size (no gain) and leaves the jaw to speech."""
    import copy
    params = copy.deepcopy(shipped)
    canon = C.canonicalize(anne_mesh)[0][0]
    rng = np.random.default_rng(1)
    # an upper-face expression the emotion basis can hold: raised inner brows, smooth over the emotion points
    up = np.zeros((478, 3))
    up[list(E.REGIONS["inner_brow"]), 1] = -0.03
    coef = C.project_codes(up[None], params.emotion_basis)[0]
    brow = np.einsum("d,dpc->pc", coef, params.emotion_basis)
    want = E.region_vector(brow, params.mean_shape)[E.region_names().index("inner_brow down")]
    assert want < -0.005
    jaw = np.zeros((478, 3))
    jaw[C.MOUTH_POINTS, 1] = 0.05 * np.clip(canon[C.MOUTH_POINTS, 1] - canon[14, 1] + 0.01, 0, None)
    clips = []
    for person in ("a", "b"):
        def speech(n):
            return canon[None] + rng.normal(0, 1, (n, 1, 1)) ** 2 * jaw[None] * 0.2
        clips.append(_Clip(person, "neutral", speech(30)))
        clips.append(_Clip(person, "surprise", speech(30) + brow[None] + jaw[None]))
    params.emotion_shapes, params.emotion_mouths, params.emotion_lids = {}, {}, {}
    summary = E.fit_labels(clips, params, log=lambda m: None)
    assert set(params.emotion_shapes) == {"neutral", "surprise"}
    assert summary["labels"]["surprise"]["people"] == ["a", "b"]
    r = _region(params, "surprise")
    assert r["inner_brow down"] == pytest.approx(want, rel=0.1)        # measured size, not exaggerated
    assert abs(r["lower_lip down"]) < 0.01                              # no jaw drop from the label
    assert np.abs(E.opening_constraints(params) @ params.emotion_mouth("surprise")).max() < 1e-9
    np.testing.assert_allclose(params.emotion_lid("surprise"), 0.0, atol=0.05)
