import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PDFGC_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
REFERENCE = SHARED / "reference"
FIXTURE = REFERENCE / "official_fixture"

# deliberate thread count: on a busy 2-core box the default can make small ops 10-100x slower
torch.set_num_threads(int(os.environ.get("PDFGC_TEST_THREADS", "2")))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny():
    from pdfgc.families.pdfgc.testing import tiny_model
    return tiny_model(0)


@pytest.fixture(scope="session")
def tiny_pipe(tiny):
    from pdfgc.pipeline import TalkingHeadPipeline
    return TalkingHeadPipeline(tiny, device="cpu", threads=torch.get_num_threads())


@pytest.fixture(autouse=True, scope="session")
def _private_pdfgc_cache(tmp_path_factory):
    """pdfgc's cache (the driving clips' kept face meshes, `pdfgc.media.driving_cache`) in a folder of the test
    session's own, not the user's ~/.cache/pdfgc; the CLI tests' subprocesses inherit it."""
    old = os.environ.get("PDFGC_CACHE")
    os.environ["PDFGC_CACHE"] = str(tmp_path_factory.mktemp("pdfgc_cache"))
    yield
    if old is None:
        os.environ.pop("PDFGC_CACHE", None)
    else:
        os.environ["PDFGC_CACHE"] = old


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


# ---- a small prepared corpus (`pdfgc prepare`) shared by the data and training tests

def cut_clip(src, dst, start_s: float, dur_s: float, mirror: bool = False, audio: bool = True) -> Path:
    """Write dur_s seconds of the video `src` from start_s (25 fps, with its audio when `audio`) to `dst`."""
    from pdfgc.media.audio_io import decode_audio
    from pdfgc.media.video import VideoWriter, iter_video_frames

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    samples = rate = None
    if audio:
        samples, rate = decode_audio(src)
        samples = samples[:, int(start_s * rate): int((start_s + dur_s) * rate)]
    first, last = round(start_s * 25), round((start_s + dur_s) * 25)
    with VideoWriter(dst, fps=25, audio=samples, audio_rate=rate) as w:
        for i, frame in enumerate(iter_video_frames(src, fps=25)):
            if i >= last:
                break
            if i >= first:
                w.write(frame[:, ::-1] if mirror else frame)
    return dst


@pytest.fixture(scope="session")
def prepared_raw(tmp_path_factory) -> Path:
    """Raw folder with two real 1.5 s clips: VoxCeleb2 layout with audio, MEAD layout (happy, level 2) without."""
    raw = tmp_path_factory.mktemp("raw") / "raw"
    cut_clip(need(DATA / "megactor/audio_CHTF_4.mp4"), raw / "id00001/clipA/00001.mp4", 0.0, 1.5)
    cut_clip(need(DATA / "edtalk/pose_source1.mp4"), raw / "M003/video/front/happy/level_2/001.mp4", 0.0, 1.5,
             audio=False)
    return raw


@pytest.fixture(scope="session")
def prepared_corpus(prepared_raw, tmp_path_factory) -> Path:
    """OUT_DIR of `pdfgc prepare` on `prepared_raw`: two clips (35 frames with audio, 38 frames without)."""
    from pdfgc.data.prepare import prepare_corpus

    out = tmp_path_factory.mktemp("prepared") / "corpus"
    prepare_corpus(prepared_raw, out, workers=1, progress=False, log=lambda m: None)
    return out


def one_error(capsys, *needles: str, no_warning: bool = False) -> str:
    """The captured stderr holds exactly one `pdfgc: error:` line, no traceback (and, with `no_warning`, no
    warning), and each needle in that line."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("pdfgc: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    if no_warning:
        assert "Warning" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def tiny_weights(tiny, tmp_path_factory):
    return tiny.save_pretrained(tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture(scope="session")
def anne_mesh():
    """anne.png's face mesh (float64), as the evaluation tracks a still."""
    pytest.importorskip("mediapipe")
    import numpy as np
    from PIL import Image

    from pdfgc.evaluation.landmarks import track_faces
    image = np.array(Image.open(need(DATA / "pdfgc" / "anne.png")).convert("RGB"))
    return track_faces([image], source="anne.png", static=True).landmarks[0].astype(np.float64)


@pytest.fixture(scope="session")
def still_detector():
    """One static-image face-mesh graph (one face) shared by the renderer tests."""
    pytest.importorskip("mediapipe")
    from pdfgc.media.face import FaceMeshDetector
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as d:
        yield d


@pytest.fixture(scope="session")
def anne_face(still_detector):
    """anne.png (RGB uint8) and its face mesh in pixels, as the renderer sees a portrait."""
    from pdfgc.media.face import load_image_rgb
    img = load_image_rgb(need(DATA / "pdfgc" / "anne.png"))
    faces = still_detector.detect(img)
    assert faces, "no face in anne.png"
    return img, faces[0]


def write_wav16(path, samples, rate: int = 16000):
    """Mono float samples in [-1, 1] as a 16-bit PCM wav (Python's `wave` module); returns the path."""
    import wave

    import numpy as np
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="session")
def pipes():
    """The packaged default model behind a 1-thread and a 2-thread pipeline (the serial and the threaded paths)."""
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    model = load_model()
    return (TalkingHeadPipeline(model, device="cpu", threads=1),
            TalkingHeadPipeline(model, device="cpu", threads=2))
