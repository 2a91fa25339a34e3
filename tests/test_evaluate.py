"""`pdfgc evaluate` on cases with known answers (real frames, no generator involved)."""
import json
import shutil

import cv2
import numpy as np
import pytest

from pdfgc.errors import InputError
from pdfgc.evaluation.evaluate import EvalCase, EvalOptions, compare, evaluate_case

from .conftest import DATA, need

PD = DATA / "pdfgc"
POSE = PD / "motions/pose/681600002"
EYE = PD / "motions/eye/id01333_00040/images"
EXP = PD / "motions/exp/vox2_id01228_00309"


def _copy_frames(src_files, dst, transform=None):
    dst.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(src_files):
        img = cv2.imread(str(f))
        if transform is not None:
            img = transform(img)
        cv2.imwrite(str(dst / f"{i:04d}.png"), img)
    return dst


@pytest.fixture(scope="module")
def eye_clip(tmp_path_factory):
    return _copy_frames(sorted(need(EYE).iterdir())[:60], tmp_path_factory.mktemp("eye") / "frames")


@pytest.fixture(scope="module")
def opts(tmp_path_factory):
    return EvalOptions(cache_dir=str(tmp_path_factory.mktemp("cache")), identity_every=10)


def test_video_against_itself_scores_perfectly(eye_clip, opts):
    case = EvalCase(str(eye_clip), pose=str(eye_clip), eyes=str(eye_clip), emotion=str(eye_clip),
                    portrait=str(eye_clip / "0000.png"), driving_skip=0, layout="result")
    m = evaluate_case(case, opts).metrics
    assert m["frames"] == 60 and m["no_face_frames"]["generated"] == 0
    for a in ("yaw", "pitch", "roll"):
        assert m["pose"]["mae_deg"][a] == pytest.approx(0, abs=1e-6)
    assert m["blink"]["ear_pearson"] == pytest.approx(1, abs=1e-6)
    assert m["blink"]["events_source"] >= 1 and m["blink"]["precision"] == m["blink"]["recall"] == 1
    assert m["gaze"]["mae"]["x"] == pytest.approx(0, abs=1e-9)
    assert m["emotion"]["class_agreement"] == 1 and m["emotion"]["prob_l1"] == pytest.approx(0, abs=1e-6)
    assert m["identity"]["mean_distance"] < 0.6  # the same person as the portrait frame


def test_identity_of_a_different_person(eye_clip, opts):
    case = EvalCase(str(eye_clip), portrait=str(PD / "anne.png"), layout="result")
    m = evaluate_case(case, opts).metrics
    assert m["identity"]["mean_distance"] > 0.6 and m["identity"]["same_person_rate"] < 0.5


def test_a_clip_with_blinks_against_one_without(eye_clip, tmp_path, opts):
    files = sorted(eye_clip.iterdir())
    still = _copy_frames([files[0]] * 60, tmp_path / "still")
    m = evaluate_case(EvalCase(str(still), eyes=str(eye_clip), driving_skip=0, layout="result"), opts).metrics
    assert m["blink"]["events_generated"] == 0 and m["blink"]["events_source"] >= 1
    assert m["blink"]["recall"] == 0


def test_lip_offset_of_a_time_shifted_copy(tmp_path, opts):
    """Mouth opening of a real talking clip against its own audio and against the audio delayed by 3 frames."""
    from pdfgc.media.audio_io import load_speech

    video = need(DATA / "edtalk/mouth_source.mp4")
    wav = load_speech(DATA / "edtalk/mouth_source.wav")
    import wave
    def write(path, x):
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((np.clip(x / (np.abs(x).max() + 1e-9), -1, 1) * 32000).astype("<i2").tobytes())
        return path
    a0 = write(tmp_path / "a0.wav", wav)
    a3 = write(tmp_path / "a3.wav", np.concatenate([np.zeros(3 * 640, np.float32), wav]))
    o = EvalOptions(cache_dir=opts.cache_dir, identity=False, emotion=False)
    m0 = evaluate_case(EvalCase(str(video), audio=str(a0), layout="result"), o).metrics["lips"]
    m3 = evaluate_case(EvalCase(str(video), audio=str(a3), layout="result"), o).metrics["lips"]
    assert m0["best_offset_pearson"] > 0.15  # dependencies.md: 0.16-0.32 for matched audio
    assert m3["best_offset_frames"] - m0["best_offset_frames"] == 3


def test_official_five_panel_layout_is_read(tmp_path, opts):
    """A strip appearance | generated | pose | expression | eye: the panels become the sources."""
    from pdfgc.media.video import VideoWriter

    pose = sorted(need(POSE).iterdir())[:40]
    eye = sorted(EYE.iterdir())[:40]
    exp = sorted(EXP.iterdir())[2]
    anne = cv2.cvtColor(cv2.imread(str(PD / "anne.png")), cv2.COLOR_BGR2RGB)
    rd = lambda f: cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
    out = tmp_path / "strip.mp4"
    with VideoWriter(out, audio=None) as w:
        for p, e in zip(pose, eye):
            w.write(np.concatenate([anne, rd(p), rd(p), rd(exp), rd(e)], axis=1))
    r = evaluate_case(EvalCase(str(out)), opts)
    m = r.metrics
    assert m["layout"] == "panels" and m["frames"] == 40
    assert m["pose"]["pearson"]["yaw"] > 0.95  # the generated panel is the pose panel itself
    assert {"blink", "gaze", "emotion", "identity"} <= set(m)


def test_frames_without_a_face_are_counted(eye_clip, tmp_path, opts):
    d = tmp_path / "holes"
    shutil.copytree(eye_clip, d)
    for i in (5, 6, 30):
        cv2.imwrite(str(d / f"{i:04d}.png"), np.full((224, 224, 3), 127, np.uint8))
    m = evaluate_case(EvalCase(str(d), eyes=str(eye_clip), driving_skip=0, layout="result"),
                      EvalOptions(cache_dir=opts.cache_dir, identity=False, emotion=False)).metrics
    assert m["no_face_frames"]["generated"] == 3
    assert np.isfinite(m["blink"]["ear_pearson"])


def test_disentanglement_changing_the_pose_source(eye_clip, tmp_path, opts):
    """Two 'generations' whose frames differ only by an in-plane rotation: pose moves, eyes and mouth do not."""
    M = cv2.getRotationMatrix2D((112, 112), 8, 1.0)
    rot = _copy_frames(sorted(eye_clip.iterdir()), tmp_path / "rot", lambda im: cv2.warpAffine(im, M, (224, 224)))
    o = EvalOptions(cache_dir=opts.cache_dir, identity=False, emotion=False)
    a = evaluate_case(EvalCase(str(eye_clip), layout="result"), o)
    b = evaluate_case(EvalCase(str(rot), layout="result"), o)
    d = compare(a, b)["movement"]
    assert d["pose_deg"]["roll"] > 5
    assert d["ear"] < 0.03


def test_bad_inputs(tmp_path, opts):
    with pytest.raises(InputError, match="missing.mp4"):
        evaluate_case(EvalCase(str(tmp_path / "missing.mp4")), opts)
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    with pytest.raises(InputError, match="bad.mp4"):
        evaluate_case(EvalCase(str(bad)), opts)
    short = _copy_frames(sorted(EYE.iterdir())[:5], tmp_path / "short")
    with pytest.raises(InputError, match="short"):
        evaluate_case(EvalCase(str(EYE), ground_truth=str(short), layout="result"), opts)


def test_cli_writes_json_markdown_and_plots(eye_clip, tmp_path):
    from pdfgc.cli import main

    out = tmp_path / "eval"
    rc = main(["evaluate", str(eye_clip), "--eyes", str(eye_clip), "--pose", str(eye_clip), "--driving-skip", "0",
               "--portrait", str(eye_clip / "0000.png"), "--no-emotion", "-o", str(out)])
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["cases"][0]["blink"]["ear_pearson"] == pytest.approx(1, abs=1e-6)
    assert "EAR r" in (out / "metrics.md").read_text()
    assert (out / "plots" / f"{eye_clip.name}.png").stat().st_size > 10_000
    assert main(["evaluate", "--manifest", str(tmp_path / "none.json"), "-o", str(out)]) == 2


def test_ground_truth_metrics_self_and_degraded(eye_clip, tmp_path, opts):
    o = EvalOptions(cache_dir=opts.cache_dir, identity=False, emotion=False)
    m = evaluate_case(EvalCase(str(eye_clip), ground_truth=str(eye_clip), layout="result"), o).metrics
    assert m["quality"]["psnr"] == float("inf") and m["quality"]["ssim"] == pytest.approx(1.0)
    assert m["quality"]["face_l1"] == 0 and m["lips_gt"]["m_lmd_px"] == pytest.approx(0, abs=1e-6)
    rng = np.random.default_rng(0)
    noisy = _copy_frames(sorted(eye_clip.iterdir()), tmp_path / "noisy",
                         lambda im: np.clip(im + rng.normal(0, 8, im.shape), 0, 255).astype(np.uint8))
    m = evaluate_case(EvalCase(str(noisy), ground_truth=str(eye_clip), layout="result"), o).metrics
    assert 28 < m["quality"]["psnr"] < 32  # Gaussian noise of sigma 8 levels: 20*log10(255/8) = 30.1 dB
    assert m["quality"]["ssim"] < 0.95 and 4 < m["quality"]["face_l1"] < 8
    assert m["lips_gt"]["m_lmd_px"] < 3
