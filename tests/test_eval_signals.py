"""Tests of pdfgc.evaluation.landmarks and .signals: face tracks, head pose, eyes, mouth, jitter, events, statistics.

Each check has a known answer on real media: a video against itself, its mirror image, a frame rotated by a known
angle, a clip with blinks, a known time shift, a blank frame.
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from pdfgc.errors import InputError
from pdfgc.evaluation import signals as S
from pdfgc.evaluation.landmarks import FaceTrack, frame_fingerprint, track_faces

from .conftest import DATA, need

pytest.importorskip("mediapipe")

ANNE = DATA / "pdfgc" / "anne.png"
EYE_DIR = DATA / "pdfgc" / "motions" / "eye" / "id01333_00040" / "images"
POSE_DIR = DATA / "pdfgc" / "motions" / "pose" / "681600002"
POSE_MP4 = DATA / "edtalk" / "pose_source1.mp4"


def _folder(path) -> list[np.ndarray]:
    from PIL import Image
    files = sorted(p for p in need(path).iterdir() if p.suffix.lower() in (".jpg", ".png"))
    return [np.array(Image.open(p).convert("RGB")) for p in files]


def _mirror(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.flip(f, axis=1)) for f in frames]


@pytest.fixture(scope="module")
def anne() -> np.ndarray:
    from PIL import Image
    return np.array(Image.open(need(ANNE)).convert("RGB"))


@pytest.fixture(scope="module")
def eye_frames() -> list[np.ndarray]:
    return _folder(EYE_DIR)


@pytest.fixture(scope="module")
def eye_track(eye_frames) -> FaceTrack:
    return track_faces(eye_frames, source="eye clip")


@pytest.fixture(scope="module")
def eye_mirror_track(eye_frames) -> FaceTrack:
    return track_faces(_mirror(eye_frames), source="mirrored eye clip")


@pytest.fixture(scope="module")
def pose_frames() -> list[np.ndarray]:
    return _folder(POSE_DIR)


@pytest.fixture(scope="module")
def pose_track(pose_frames) -> FaceTrack:
    return track_faces(pose_frames, source="pose clip")


@pytest.fixture(scope="module")
def mp4_frames() -> list[np.ndarray]:
    av = pytest.importorskip("av")
    with av.open(str(need(POSE_MP4))) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def mp4_track(mp4_frames) -> FaceTrack:
    return track_faces(iter(mp4_frames), source="pose_source1.mp4")


def _all_signals(track) -> dict[str, np.ndarray]:
    ear = S.eye_aspect_ratio(track)
    return {"pose": S.head_pose(track), "ear": ear, "iris": S.iris_position(track), "gaze": S.gaze(track),
            "mouth": S.mouth_opening(track), "interocular": S.interocular(track), "jitter": S.jitter_series(track),
            "blinks": np.array(S.blink_events(ear.mean(1)))}


# ---------------------------------------------------------------------------------------------- tracks


def test_track_shapes_and_self_consistency(mp4_frames, mp4_track):
    t = mp4_track
    assert t.num_frames == len(mp4_frames) == 250 and t.size == (256, 256)
    assert t.landmarks.shape == (250, 478, 3) and t.landmarks.dtype == np.float32
    assert t.found.all() and t.missing == 0
    # a second run over the same video gives identical landmarks, hence identical signals
    again = track_faces(mp4_frames, source="pose_source1.mp4 again")
    np.testing.assert_array_equal(again.landmarks, t.landmarks)
    a, b = _all_signals(t), _all_signals(again)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_video_against_itself(mp4_track):
    sig = _all_signals(mp4_track)
    for name in ("mouth", "interocular"):
        assert S.pearson(sig[name], sig[name]) == pytest.approx(1.0)
    for k in range(3):
        assert S.pearson(sig["pose"][:, k], sig["pose"][:, k]) == pytest.approx(1.0)
    assert S.best_offset(sig["mouth"], sig["mouth"]) == (0, pytest.approx(1.0))
    assert S.best_offset(sig["pose"][:, 0], sig["pose"][:, 0], max_offset=5)[0] == 0
    events = S.blink_events(sig["ear"].mean(1))
    assert len(events) >= 3  # the speaker blinks about every 2 s
    assert S.match_events(events, events) == (1.0, 1.0, 1.0)
    # the head moves in this clip: angles are not constant, and stay plausible
    assert np.ptp(sig["pose"], axis=0).min() > 5 and np.abs(sig["pose"]).max() < 45
    assert 0 < S.landmark_jitter(mp4_track) < 0.1


def test_blank_frame_is_counted_not_dropped(mp4_frames):
    frames = mp4_frames[:12]
    grey = np.full_like(frames[0], 128)
    track = track_faces(frames[:6] + [grey] + frames[6:], source="clip with a blank frame")
    assert track.num_frames == 13 and track.missing == 1
    assert track.found.tolist() == [True] * 6 + [False] + [True] * 6
    assert np.isnan(track.landmarks[6]).all() and np.isfinite(track.landmarks[track.found]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN must propagate quietly
        sig = _all_signals(track)
        jitter = S.landmark_jitter(track)
    for name in ("pose", "ear", "iris", "gaze", "mouth", "interocular"):
        assert np.isnan(sig[name][6]).all(), name
        assert np.isfinite(np.delete(sig[name], 6, axis=0)).all(), name
    assert np.isnan(sig["jitter"][[0, 6, 7]]).all() and np.isfinite(np.delete(sig["jitter"], [0, 6, 7])).all()
    assert np.isfinite(jitter)


def test_track_input_errors(anne):
    with pytest.raises(InputError, match="empty clip: no frames"):
        track_faces([], source="empty clip")
    with pytest.raises(InputError, match=r"odd clip: frame 1 is 100x224"):
        track_faces([anne, anne[:, :100]], source="odd clip")
    with pytest.raises(InputError, match="float clip"):
        track_faces([anne.astype(np.float32)], source="float clip")


def test_cache_round_trip_and_hit(tmp_path, eye_frames, eye_track, monkeypatch):
    frames = eye_frames[:20]
    path = tmp_path / "tracks" / "eye.npz"
    first = track_faces(frames, source="eye clip", cache=path)
    assert path.exists()
    np.testing.assert_array_equal(first.landmarks, eye_track.landmarks[:20])  # same frames, same tracking

    loaded = FaceTrack.load(path)
    np.testing.assert_array_equal(loaded.landmarks, first.landmarks)
    np.testing.assert_array_equal(loaded.found, first.found)
    np.testing.assert_array_equal(loaded.fingerprints, first.fingerprints)
    assert loaded.size == first.size == (224, 224) and loaded.static is False

    # a plain FaceTrack (no fingerprints) round-trips too
    plain = FaceTrack(first.landmarks[:3], first.found[:3], (224, 224))
    plain.save(tmp_path / "plain.npz")
    back = FaceTrack.load(tmp_path / "plain.npz")
    assert back.fingerprints is None and back.num_frames == 3

    # cache hit: mediapipe must not run at all
    import pdfgc.media.face as face_mod

    class Forbidden:
        def __init__(self, *a, **k):
            raise AssertionError("mediapipe ran despite a valid cache")

    monkeypatch.setattr(face_mod, "FaceMeshDetector", Forbidden)
    mtime = path.stat().st_mtime_ns
    hit = track_faces(iter(frames), source="eye clip", cache=path)
    np.testing.assert_array_equal(hit.landmarks, first.landmarks)
    np.testing.assert_array_equal(hit.found, first.found)
    assert path.stat().st_mtime_ns == mtime  # not rewritten

    # changed content from frame 15 on: frames 0-14 come from the cache, mediapipe runs on the rest only
    monkeypatch.undo()
    calls = []
    real = face_mod.FaceMeshDetector

    class Counting(real):
        def detect(self, image_rgb):
            calls.append(1)
            return super().detect(image_rgb)

    monkeypatch.setattr(face_mod, "FaceMeshDetector", Counting)
    changed = frames[:15] + _mirror(frames[15:])
    partial = track_faces(changed, source="eye clip", cache=path)
    assert len(calls) == 5
    np.testing.assert_array_equal(partial.landmarks[:15], first.landmarks[:15])
    assert not np.allclose(partial.landmarks[15:], first.landmarks[15:], equal_nan=True)
    # ...and the cache now describes the new content
    calls.clear()
    again = track_faces(changed, source="eye clip", cache=path)
    assert not calls
    np.testing.assert_array_equal(again.landmarks, partial.landmarks)
    # a longer video reuses the prefix and tracks the rest; static mode never reuses a tracking-mode cache
    track_faces(eye_frames[:23][:15] + _mirror(eye_frames[15:23]), source="eye clip", cache=path)
    assert len(calls) == 3
    calls.clear()
    track_faces(changed[:2], source="eye clip", cache=path, static=True)
    assert len(calls) == 2


def test_corrupt_cache_is_replaced(tmp_path, anne):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="bad.npz"):
        FaceTrack.load(path)
    with pytest.raises(InputError, match="no such file"):
        FaceTrack.load(tmp_path / "missing.npz")
    track = track_faces([anne], source="portrait", cache=path, static=True)
    assert track.found.all()
    np.testing.assert_array_equal(FaceTrack.load(path).landmarks, track.landmarks)
    # an unwritable cache location only warns
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.warns(UserWarning, match="portrait: landmarks not cached"):
        again = track_faces([anne], source="portrait", cache=blocker / "sub" / "c.npz", static=True)
    np.testing.assert_array_equal(again.landmarks, track.landmarks)


def test_fingerprint_sees_content_and_shape(anne):
    a = frame_fingerprint(anne)
    assert a == frame_fingerprint(anne.copy())
    other = anne.copy()
    other[100:110, 100:110] += 1
    assert frame_fingerprint(other) != a
    assert frame_fingerprint(anne[:, :223]) != a


# ---------------------------------------------------------------------------------------------- head pose


def test_template_is_anne_symmetric_and_frontal(anne):
    track = track_faces([anne], source="anne.png", static=True)
    rebuilt = S.build_face_template(track.landmarks)
    np.testing.assert_allclose(rebuilt, S.FACE_TEMPLATE, atol=2e-3)
    perm = S._rigid_perm()
    np.testing.assert_allclose(S.FACE_TEMPLATE * [-1, 1, 1], S.FACE_TEMPLATE[perm], atol=1e-6)
    yaw, pitch, roll = S.head_pose(track)[0]
    assert abs(yaw) < 2 and abs(pitch) < 0.5 and abs(roll) < 1


@pytest.mark.parametrize("angles", [(0, 0, 0), (20, 0, 0), (0, 15, 0), (0, 0, -12), (25, -10, 8), (-30, 12, -20)])
def test_head_pose_recovers_known_rotations(angles):
    rot = S.angles_to_rotation(*angles)
    np.testing.assert_allclose(S.rotation_to_angles(rot), angles, atol=1e-9)
    # a synthetic face: the template rotated, scaled to pixels, moved, into a 478-point mesh
    lm = np.full((2, 478, 3), np.nan)
    lm[0, S.RIGID_POINTS] = 80 * S.FACE_TEMPLATE @ rot.T + [112, 120, 0]
    rot_est, scale, trans = S.head_transform(lm)
    np.testing.assert_allclose(S.head_pose(lm)[0], angles, atol=1e-6)
    assert scale[0] == pytest.approx(80) and np.allclose(trans[0], [112, 120, 0], atol=1e-9)
    assert np.isnan(S.head_pose(lm)[1]).all()


def test_head_pose_sign_conventions():
    nose = S.FACE_TEMPLATE[list(S.RIGID_POINTS).index(5)]  # lower nose bridge, in front of the face
    assert nose[2] < 0  # nearer the camera than the centre
    # yaw > 0: the face turns toward the image's right, so the nose moves right
    assert (S.angles_to_rotation(20, 0, 0) @ nose)[0] > nose[0] + 0.1
    # pitch > 0: the face tilts up, so the nose moves up (smaller y)
    assert (S.angles_to_rotation(0, 20, 0) @ nose)[1] < nose[1] - 0.1
    # roll > 0: clockwise in the image (y down): the image-right point goes down
    right = np.array([1.0, 0.0, 0.0])
    assert (S.angles_to_rotation(0, 0, 20) @ right)[1] > 0.3


def test_head_pose_follows_image_cues(pose_track):
    """On a real clip with head turns, yaw and pitch follow the nose tip's 2-D offset from the face outline."""
    lm = pose_track.landmarks.astype(np.float64)
    pose = S.head_pose(pose_track)
    outline = lm[:, [234, 454], :2].mean(1)
    assert S.pearson(pose[:, 0], lm[:, 1, 0] - outline[:, 0]) > 0.9  # nose right of centre <-> yaw > 0
    assert S.pearson(pose[:, 1], outline[:, 1] - lm[:, 1, 1]) > 0.9  # nose raised <-> pitch > 0
    assert np.ptp(pose[:, 0]) > 15 and np.ptp(pose[:, 2]) > 8
    # blinks and speech do not shake the angles: small frame-to-frame changes
    assert np.nanmean(np.abs(np.diff(pose, axis=0))) < 1.0


@pytest.mark.parametrize("source", ["anne", "eye"])
def test_roll_of_rotated_frame(source, anne, eye_frames):
    image = anne if source == "anne" else eye_frames[10]
    base = track_faces([image], source=source, static=True)
    centre = tuple(float(v) for v in base.landmarks[0, :, :2].mean(0))
    yaw0, pitch0, roll0 = S.head_pose(base)[0]
    for angle in (10.0, -10.0):
        # cv2's positive angle turns the picture COUNTER-clockwise on screen, so roll (clockwise) drops by `angle`
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        turned = cv2.warpAffine(image, m, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        yaw, pitch, roll = S.head_pose(track_faces([turned], source=source, static=True))[0]
        assert roll - roll0 == pytest.approx(-angle, abs=2.0)
        assert abs(yaw - yaw0) < 2.0 and abs(pitch - pitch0) < 2.0


def test_mirrored_pose(pose_frames, pose_track):
    mirrored = track_faces(_mirror(pose_frames), source="mirrored pose clip")
    p, m = S.head_pose(pose_track), S.head_pose(mirrored)
    yaw, pitch, roll = p.T
    assert np.abs(yaw).mean() > 3 and np.abs(roll).mean() > 3  # the clip turns and tilts its head
    assert np.abs(yaw + m[:, 0]).mean() < 0.3 * np.abs(yaw).mean()
    assert np.abs(roll + m[:, 2]).mean() < 0.3 * np.abs(roll).mean()
    assert np.abs(pitch - m[:, 1]).mean() < 2.0
    assert S.pearson(yaw, -m[:, 0]) > 0.95 and S.pearson(roll, -m[:, 2]) > 0.95 and S.pearson(pitch, m[:, 1]) > 0.85


# ---------------------------------------------------------------------------------------------- eyes and mouth


def test_mirrored_eyes(eye_track, eye_mirror_track):
    ear, ear_m = S.eye_aspect_ratio(eye_track), S.eye_aspect_ratio(eye_mirror_track)
    # the columns swap: the image-left eye of the mirror is the image-right eye of the original
    assert np.abs(ear - ear_m[:, ::-1]).mean() < 0.6 * np.abs(ear - ear_m).mean()
    assert S.pearson(ear[:, 0] - ear[:, 1], ear_m[:, 1] - ear_m[:, 0]) > 0.7
    g, g_m = S.gaze(eye_track), S.gaze(eye_mirror_track)
    assert np.abs(g[:, 0]).mean() > 0.05  # this person looks around
    assert S.pearson(g[:, 0], g_m[:, 0]) < -0.85
    assert np.abs(g[:, 0] + g_m[:, 0]).mean() < 0.5 * np.abs(g[:, 0]).mean()
    assert np.abs(S.mouth_opening(eye_track) - S.mouth_opening(eye_mirror_track)).mean() < 0.01


def test_eye_clip_blinks(eye_frames, eye_track):
    ear = S.eye_aspect_ratio(eye_track)
    mean = ear.mean(1)
    assert 0.25 < np.median(mean) < 0.4  # open-eye level
    events = S.blink_events(mean)
    assert len(events) >= 1
    start, end = events[0]
    assert mean[start:end + 1].max() < 0.6 * np.median(mean) and mean[start:end + 1].min() < 0.1
    # the first open-eye frame, repeated: no blink
    first_open = int(np.argmax(mean > 0.9 * np.median(mean)))
    still = track_faces([eye_frames[first_open]] * 25, source="still eye frame")
    assert S.blink_events(S.eye_aspect_ratio(still).mean(1)) == []


def test_iris_and_gaze_geometry(eye_track):
    pos = S.iris_position(eye_track)
    assert pos.shape == (101, 2, 2)
    open_ = S.eye_aspect_ratio(eye_track).mean(1) > 0.2
    assert ((pos[open_, :, 0] > 0.15) & (pos[open_, :, 0] < 0.85)).all()  # the iris lies between the corners
    assert (np.abs(pos[open_, :, 1]) < 0.3).all()  # (up to 0.2 with the head turned 40 degrees)
    # move both irises (all 5 points) 2 px toward the image right, then down: gaze x, then y, grows
    lm = eye_track.landmarks.astype(np.float64).copy()
    width = np.linalg.norm(lm[:, 133, :2] - lm[:, 33, :2], axis=1)
    shifted = lm.copy()
    shifted[:, 468:478, 0] += 2.0
    dx = S.gaze(shifted)[:, 0] - S.gaze(lm)[:, 0]
    assert (dx > 0).all() and np.allclose(np.median(dx), np.median(2.0 / width), rtol=0.3)
    shifted = lm.copy()
    shifted[:, 468:478, 1] += 2.0
    assert (S.gaze(shifted)[:, 1] > S.gaze(lm)[:, 1]).all()


def test_mouth_opening_and_best_offset(mp4_track):
    mouth = S.mouth_opening(mp4_track)
    assert (mouth >= 0).all() and mouth.max() < 0.3 and np.ptp(mouth) > 0.02  # the speaker talks
    for shift in (3, -3, 5):
        shifted = np.full_like(mouth, np.nan)
        if shift > 0:
            shifted[shift:] = mouth[:-shift]  # shifted lags mouth by `shift` frames
        else:
            shifted[:shift] = mouth[-shift:]
        offset, r = S.best_offset(mouth, shifted, max_offset=8)
        assert offset == shift and r == pytest.approx(1.0)
        assert S.best_offset(shifted, mouth, max_offset=8)[0] == -shift


def test_interocular_and_jitter(pose_track):
    io = S.interocular(pose_track)
    assert 40 < np.median(io) < 100
    # 3-D, so head turns hardly change it relative to the face size from the rigid fit
    ratio = io / S.head_transform(pose_track)[1]
    assert ratio.std() / ratio.mean() < 0.05
    series = S.jitter_series(pose_track)
    assert series.shape == (pose_track.num_frames,) and np.isnan(series[0]) and np.isfinite(series[1:]).all()
    assert S.landmark_jitter(pose_track) == pytest.approx(np.mean(series[1:]))
    # a still frame has (almost) no jitter; added landmark noise raises it
    still = np.repeat(pose_track.landmarks[:1], 10, axis=0).astype(np.float64)
    assert S.landmark_jitter(still) == 0.0
    rng = np.random.default_rng(0)
    noisy = still + rng.normal(0, 1.0, still.shape)
    assert S.landmark_jitter(noisy) > 0.01
    assert np.isnan(S.landmark_jitter(still[:1]))


# ---------------------------------------------------------------------------------------------- events, statistics


def test_blink_events_synthetic():
    ear = np.full(60, 0.3)
    ear[[10, 11, 12]] = 0.05
    ear[30] = 0.1               # one frame is enough
    ear[[40, 42]] = 0.05        # a one-frame gap is merged
    ear[50] = np.nan            # a faceless frame is not a blink
    assert S.blink_events(ear) == [(10, 12), (30, 30), (40, 42)]
    assert S.blink_events(ear, threshold=0.08) == [(10, 12), (40, 42)]
    assert S.blink_events(ear, fps=10.0) == [(10, 12), (30, 30), (40, 42)]
    assert S.blink_events(np.full(20, 0.3)) == []
    assert S.blink_events(np.full(20, np.nan)) == []
    assert S.blink_threshold(ear) == pytest.approx(0.18)


def test_match_events():
    ref = [(10, 12), (30, 31), (60, 62)]
    assert S.match_events(ref, ref) == (1.0, 1.0, 1.0)
    p, r, f1 = S.match_events([(14, 15), (33, 34), (80, 81)], ref, tolerance=3)
    assert (p, r) == (pytest.approx(2 / 3), pytest.approx(2 / 3)) and f1 == pytest.approx(2 / 3)
    assert S.match_events([(16, 17)], [(10, 12)], tolerance=3)[:2] == (0.0, 0.0)
    # one to one: two predictions near one reference count once
    assert S.match_events([(10, 10), (12, 12)], [(11, 11)]) == (0.5, 1.0, pytest.approx(2 / 3))
    p, r, f1 = S.match_events([], ref)
    assert np.isnan(p) and r == 0.0 and f1 == 0.0
    p, r, f1 = S.match_events(ref, [])
    assert p == 0.0 and np.isnan(r) and f1 == 0.0
    assert all(np.isnan(S.match_events([], [])))


def test_pearson_and_best_offset_edge_cases():
    x = np.sin(np.linspace(0, 6, 50))
    assert S.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert S.pearson(x, -x) == pytest.approx(-1.0)
    y = x.copy()
    y[::3] = np.nan
    assert S.pearson(x, y) == pytest.approx(1.0)  # NaN pairs are ignored
    assert np.isnan(S.pearson([1.0, 2.0], [2.0, 4.0]))  # fewer than 3 pairs
    assert np.isnan(S.pearson([1.0, np.nan, 2.0, 3.0], [1.0, 2.0, np.nan, 3.0]))
    assert np.isnan(S.pearson(np.ones(10), x[:10]))  # zero variance
    with pytest.raises(ValueError):
        S.pearson(x, x[:10])
    k, r = S.best_offset(np.ones(20), x[:20])
    assert k == 0 and np.isnan(r)
    k, r = S.best_offset(x, x[2:], max_offset=4)  # different lengths: b starts 2 samples later, so b leads a
    assert k == -2 and r == pytest.approx(1.0)
