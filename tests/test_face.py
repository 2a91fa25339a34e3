"""Tests of pdfgc.media.face: the PC-AVS 224 alignment with mediapipe, paste-back, sequences, bad inputs."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pdfgc.errors import FaceNotFoundError, InputError
from pdfgc.media import face as F

DATA = Path("/work/shared/data")
ANNE = DATA / "pdfgc" / "anne.png"
MOTIONS = DATA / "pdfgc" / "motions"
POSE_CLIP = DATA / "edtalk" / "pose_source1.mp4"
D3_CLIP = DATA / "liveportrait" / "driving_d3.mp4"
UNCROP = DATA / "edtalk" / "uncrop_face.jpg"
S9 = DATA / "liveportrait" / "source_s9.jpg"

needs_data = pytest.mark.skipif(not ANNE.exists(), reason="shared test data not available")
pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def detector():
    with F.FaceMeshDetector(static_image_mode=True, max_num_faces=4) as d:
        yield d


@pytest.fixture(scope="module")
def anne():
    return F.load_image_rgb(ANNE)


def _read_clip(path: Path, n: int) -> list[np.ndarray]:
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(n), container.decode(video=0))]


def _point_error(matrix: np.ndarray, points: np.ndarray = F.MEDIAPIPE_TEMPLATE) -> np.ndarray:
    """How far ``matrix`` moves each point: 0 for the identity."""
    return np.linalg.norm(F.apply_affine(matrix, points) - points, axis=1)


def _synthetic_canvas(anne: np.ndarray, angle: float = 10.0, scale: float = 1.7, shift=(150, 120), size=(640, 520)):
    """anne.png rotated, scaled and shifted onto a larger background; returns (canvas, anne->canvas matrix)."""
    s = cv2.getRotationMatrix2D((112.0, 112.0), angle, scale)
    s[:, 2] += shift
    canvas = np.empty((size[1], size[0], 3), np.uint8)
    canvas[:] = (40, 90, 60)
    canvas = cv2.warpAffine(anne, s, size, dst=canvas, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
    return canvas, s


def _paste(canvas: np.ndarray, image: np.ndarray, side: int, x: int, y: int) -> np.ndarray:
    canvas[y:y + side, x:x + side] = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    return canvas


# ------------------------------------------------------------------------------------------ geometry


def test_similarity_matches_skimage():
    transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(0)
    for _ in range(20):
        src = rng.uniform(0, 800, (3, 2))
        ours = F.similarity_transform(src, F.PCAVS_FAN_TEMPLATE)
        t = transform.SimilarityTransform()
        with warnings.catch_warnings():
            # estimate() is deprecated in newer skimage, from_estimate() absent in older
            warnings.simplefilter("ignore")
            t.estimate(src, F.PCAVS_FAN_TEMPLATE)
        np.testing.assert_allclose(F.apply_affine(ours, src), t(src), atol=1e-4)


def test_template_orientation():
    t = F.MEDIAPIPE_TEMPLATE
    assert t[0, 0] < t[1, 0]  # image-left eye first
    assert t[0, 1] == pytest.approx(t[1, 1])  # level eyes
    assert t[2, 1] > t[0, 1]  # mouth below
    assert abs(np.linalg.norm(t[1] - t[0]) - 50) < 3  # PC-AVS: 50 px between the eyes


def test_network_view_matches_fixed_crop_and_zoom(anne):
    """network_view_matrix reproduces PD-FGC's loader: crop rows [0,192), cols [16,208), resize to 224."""
    zoomed = cv2.resize(anne[0:192, 16:208], (224, 224), interpolation=cv2.INTER_LINEAR)
    via_matrix = F.warp_to_crop(anne, F.network_view_matrix(np.eye(2, 3)))
    diff = np.abs(zoomed.astype(int) - via_matrix.astype(int))
    assert diff[:, :].mean() < 1.0
    # the spec's numbers: the FAN eye target (87,59) becomes ~(82.8,68.8)
    np.testing.assert_allclose(F.apply_affine(F.NETWORK_VIEW_MATRIX, [87.0, 59.0]), [82.8, 68.8], atol=0.2)


def test_looks_like_aligned_crop(anne):
    assert F.looks_like_aligned_crop(anne)
    assert not F.looks_like_aligned_crop(np.zeros((256, 256, 3), np.uint8))
    assert not F.looks_like_aligned_crop(np.zeros((224, 300, 3), np.uint8))


# ------------------------------------------------------------------------------------------ photos


@needs_data
def test_aligned_crop_realigns_to_identity(anne, detector):
    al = F.align_portrait(anne, detector=detector)
    assert al.num_faces == 1 and al.source_size == (224, 224) and al.landmarks.shape == (478, 2)
    assert _point_error(al.matrix).max() < 1.5
    assert al.scale == pytest.approx(1.0, abs=0.01)
    # a ~1 px shift of a sharp image
    assert np.abs(F.warp_to_crop(anne, al).astype(int) - anne.astype(int))[:180, 30:194].mean() < 8


@needs_data
def test_shipped_motion_frames_near_identity(detector):
    """Frontal VoxCeleb2 driving frames are already aligned: re-aligning moves them only a few pixels."""
    frames = sorted((MOTIONS / "pose" / "681600002").glob("*.jpg"))[:40:4]
    if not frames:
        pytest.skip("motion frames not available")
    errors = [_point_error(F.align_portrait(F.load_image_rgb(p), detector=detector).matrix).max() for p in frames]
    assert np.median(errors) < 8


@needs_data
def test_synthetic_canvas_recovers_anne(anne, detector):
    canvas, s = _synthetic_canvas(anne)
    al = F.align_portrait(canvas, source="canvas", detector=detector)
    assert al.source_size == (520, 640) and al.num_faces == 1
    # the recovered alignment undoes the synthetic transform at the three points
    assert _point_error(F.compose(al.matrix, s)).max() < 2.0
    crop = F.warp_to_crop(canvas, al)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    face = np.abs(crop.astype(int) - anne.astype(int))[30:180, 50:174]
    assert face.mean() < 12

    # pasting the crop back reproduces the canvas where the face is
    pasted = F.paste_back(canvas, crop, al)
    assert pasted.shape == canvas.shape and pasted.dtype == np.uint8
    x0, y0 = np.floor(al.landmarks.min(0)).astype(int)
    x1, y1 = np.ceil(al.landmarks.max(0)).astype(int)
    region = np.abs(pasted.astype(int) - canvas.astype(int))[y0:y1, x0:x1]
    assert region.mean() < 4
    # and leaves the rest alone
    far = np.abs(pasted.astype(int) - canvas.astype(int))[:, :40]
    assert far.max() == 0


@needs_data
def test_large_face_uses_antialiased_warp(anne, detector):
    canvas, s = _synthetic_canvas(anne, angle=-6.0, scale=2.5, shift=(250, 200), size=(900, 820))
    al = F.align_portrait(canvas, detector=detector)
    assert al.scale < 0.5
    assert _point_error(F.compose(al.matrix, s)).max() < 2.5
    crop = F.warp_to_crop(canvas, al)
    assert np.abs(crop.astype(int) - anne.astype(int))[30:180, 50:174].mean() < 12
    # same geometry as the plain bilinear warp, only smoother
    plain = F.warp_to_crop(canvas, al, antialias=False)
    assert np.abs(crop.astype(int) - plain.astype(int))[30:180, 50:174].mean() < 6


@needs_data
def test_rolled_face_comes_out_upright(anne, detector):
    canvas, s = _synthetic_canvas(anne, angle=90.0, scale=1.0, shift=(100, 100), size=(424, 424))
    al = F.align_portrait(canvas, detector=detector)
    assert _point_error(F.compose(al.matrix, s)).max() < 4


@needs_data
def test_paste_back_feathers_the_edge():
    original = np.zeros((300, 300, 3), np.uint8)
    white = np.full((224, 224, 3), 255, np.uint8)
    m = np.array([[1.0, 0.0, -30.0], [0.0, 1.0, -40.0]])  # crop = original[40:264, 30:254]
    out = F.paste_back(original, white, m, feather=16)
    assert out[150, 140].tolist() == [255, 255, 255]  # inside
    assert out[10, 10].tolist() == [0, 0, 0]  # outside
    ramp = out[150, 30:50, 0].astype(int)
    assert ramp[0] < 20 and ramp[-1] > 240 and np.all(np.diff(ramp) >= 0)  # a soft, monotonic edge
    hard = F.paste_back(original, white, m, feather=0)
    assert hard[150, 31, 0] == 255


@needs_data
@pytest.mark.parametrize("path", [UNCROP, S9], ids=["uncrop_face", "source_s9"])
def test_real_photos(path, detector):
    if not path.exists():
        pytest.skip(f"{path} not available")
    image = F.load_image_rgb(path)
    al = F.align_portrait(image, source=str(path), detector=detector)
    assert al.num_faces == 1
    crop = F.warp_to_crop(image, al)
    # the crop's own landmarks sit on the template (i.e. the crop looks like anne.png's framing)
    again = F.align_portrait(crop, detector=detector)
    assert _point_error(again.matrix).max() < 3


# ------------------------------------------------------------------------------------------ bad photos


@needs_data
@pytest.mark.parametrize("kind", ["grey", "noise"])
def test_no_face(kind, detector):
    image = np.full((480, 640, 3), 128, np.uint8)
    if kind == "noise":
        image = np.random.default_rng(0).integers(0, 256, image.shape, dtype=np.uint8)
    with pytest.raises(FaceNotFoundError, match="my_photo.jpg: no face found"):
        F.align_portrait(image, source="my_photo.jpg", detector=detector)


@needs_data
def test_two_faces_picks_largest(anne, detector):
    canvas = np.full((520, 700, 3), 90, np.uint8)
    _paste(canvas, anne, 200, 20, 150)
    _paste(canvas, anne, 320, 330, 100)
    messages = []
    al = F.align_portrait(canvas, source="pair.png", detector=detector, warn=messages.append)
    assert al.num_faces == 2
    assert al.landmarks[:, 0].min() > 330  # the big face on the right
    assert len(messages) == 1 and "pair.png" in messages[0] and "2 faces" in messages[0]
    # without a warn callable the warning goes through warnings.warn
    with pytest.warns(UserWarning, match="2 faces found; using the largest"):
        F.align_portrait(canvas, source="pair.png", detector=detector)


@needs_data
def test_face_too_small(anne, detector):
    canvas = _paste(np.full((720, 1280, 3), 90, np.uint8), anne, 50, 700, 300)
    with pytest.raises(InputError, match=r"tiny.png: the face is too small: \d+ px across") as info:
        F.align_portrait(canvas, source="tiny.png", detector=detector)
    assert not isinstance(info.value, FaceNotFoundError)


@needs_data
def test_small_face_in_big_frame_is_found(anne, detector):
    """mediapipe alone misses a ~115 px face in 1280x720; the window search finds it."""
    canvas = _paste(np.full((720, 1280, 3), 90, np.uint8), anne, 224, 800, 300)
    assert detector.detect(canvas) == []
    al = F.align_portrait(canvas, detector=detector)
    s = np.array([[1.0, 0.0, 800.0], [0.0, 1.0, 300.0]])
    assert _point_error(F.compose(al.matrix, s)).max() < 2


def test_bad_arrays():
    with pytest.raises(InputError, match="clip.png: expected an 8-bit image"):
        F.align_portrait(np.zeros((100, 100, 3), np.float32), source="clip.png")
    with pytest.raises(InputError, match="expected an RGB image"):
        F.align_portrait(np.zeros((100, 100, 2), np.uint8), source="clip.png")


# ------------------------------------------------------------------------------------------ loading


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height but holds no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10000, 30000])
def test_load_rejects_huge_image_from_header(tmp_path, side):
    path = tmp_path / "huge.png"
    _png_header_only(path, side, side)
    saved = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not fire first
        with pytest.raises(InputError, match=rf"huge.png: image is too large \({side}x{side} .*limit is 64 megapixels"):
            F.load_image_rgb(path)
    assert Image.MAX_IMAGE_PIXELS == saved  # restored
    with pytest.raises(InputError, match="limit is 1 megapixels"):
        F.load_image_rgb(path, max_pixels=1_000_000)


def test_load_rejects_bad_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.jpg: file is empty"):
        F.load_image_rgb(empty)
    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n")
    with pytest.raises(InputError, match="notes.png: not an image"):
        F.load_image_rgb(text)
    with pytest.raises(InputError, match="missing.png: file not found"):
        F.load_image_rgb(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a directory"):
        F.load_image_rgb(tmp_path)
    # a truncated JPEG
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(good)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(InputError, match="cut.jpg: cannot read the image"):
        F.load_image_rgb(cut)
    with pytest.raises(InputError, match="^my label: file is empty"):
        F.load_image_rgb(empty, source="my label")


def test_load_modes_and_exif(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (200, 10, 10)
    # EXIF orientation 6: stored landscape, displayed rotated 90 degrees clockwise
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    loaded = F.load_image_rgb(tmp_path / "rot.jpg")
    assert loaded.shape == (60, 40, 3) and loaded.dtype == np.uint8
    assert loaded[5, 20, 0] > 150 and loaded[55, 20, 0] < 60  # the red half is now on top

    Image.fromarray(np.full((30, 20), 77, np.uint8)).save(tmp_path / "grey.png")
    assert F.load_image_rgb(tmp_path / "grey.png")[0, 0].tolist() == [77, 77, 77]

    sixteen = np.array([[0, 32896, 65535]], np.uint16).repeat(10, 0)
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    assert F.load_image_rgb(tmp_path / "deep.png")[0].tolist() == [[0] * 3, [128] * 3, [255] * 3]

    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:, :5] = (10, 20, 30, 255)  # opaque left half, fully transparent right half
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    loaded = F.load_image_rgb(tmp_path / "alpha.png")
    assert (loaded.shape == (10, 10, 3) and loaded[0, 0].tolist() == [10, 20, 30]
            and loaded[0, 9].tolist() == [255, 255, 255])

    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "pal.png")
    assert F.load_image_rgb(tmp_path / "pal.png").shape == (40, 60, 3)


# ------------------------------------------------------------------------------------------ sequences


def _check_sequence(aligner: F.SequenceAligner, crops: list[np.ndarray], n: int) -> None:
    m = aligner.matrices
    assert m.shape == (n, 2, 3) and len(crops) == n
    assert all(c.shape == (224, 224, 3) and c.dtype == np.uint8 for c in crops)
    # ONE similarity per video: only the translation changes from frame to frame
    np.testing.assert_allclose(m[:, :, :2], np.broadcast_to(m[0, :, :2], m[:, :, :2].shape))
    # the mouth correction is PC-AVS's smoothed one
    pts = aligner.points
    base = F.similarity_transform(pts.mean(0), F.MEDIAPIPE_TEMPLATE)
    previous = None
    for i in range(n):
        bias = F.MEDIAPIPE_TEMPLATE[2] - F.apply_affine(base, pts[i, 2])
        bias = bias if previous is None else 0.2 * previous + 0.8 * bias
        previous = bias
        np.testing.assert_allclose(m[i, :, 2], base[:, 2] + bias, atol=1e-6)
    # on average the aligned points land on the template; the mouth stays pinned
    aligned = np.stack([F.apply_affine(m[i], pts[i]) for i in range(n)])
    assert np.abs(aligned.mean(0) - F.MEDIAPIPE_TEMPLATE).max() < 3
    assert np.abs(aligned[:, 2] - F.MEDIAPIPE_TEMPLATE[2]).max() < 3


@needs_data
@pytest.mark.parametrize("clip", [POSE_CLIP, D3_CLIP], ids=["pose_source1", "driving_d3"])
def test_align_video_clip(clip):
    if not clip.exists():
        pytest.skip(f"{clip} not available")
    frames = _read_clip(clip, 30)
    messages = []
    with F.SequenceAligner(source=clip.name, warn=messages.append) as aligner:
        aligner.fit(frames)
        crops = [aligner.warp(i, f) for i, f in enumerate(frames)]
    assert messages == [] and aligner.missing_faces == 0
    _check_sequence(aligner, crops, 30)
    assert aligner.source_size == frames[0].shape[:2]
    # the convenience function gives the same crops
    again = F.align_frames(frames, source=clip.name)
    assert all(np.array_equal(a, b) for a, b in zip(again, crops))


@needs_data
def test_sequence_two_passes_from_a_generator():
    """Pass 1 keeps only landmarks, so frames can be streamed twice instead of held."""
    if not POSE_CLIP.exists():
        pytest.skip("clip not available")
    aligner = F.SequenceAligner(source="stream")
    for frame in iter(_read_clip(POSE_CLIP, 12)):
        assert aligner.add(frame)
    crops = [aligner.warp(i, f) for i, f in enumerate(_read_clip(POSE_CLIP, 12))]
    assert len(aligner) == 12 and len(crops) == 12
    with pytest.raises(RuntimeError):
        aligner.add(crops[0])


@needs_data
def test_sequence_missing_faces_reuse_neighbours():
    if not POSE_CLIP.exists():
        pytest.skip("clip not available")
    frames = _read_clip(POSE_CLIP, 16)
    blank = np.full_like(frames[0], 120)
    frames[5] = frames[6] = blank
    messages = []
    aligner = F.SequenceAligner(source="gappy.mp4", warn=messages.append).fit(frames)
    assert len(messages) == 1 and "gappy.mp4: no face found in 2 of 16 frames (frames 5, 6)" in messages[0]
    assert aligner.missing_faces == 2
    pts = aligner.points
    np.testing.assert_array_equal(pts[5], pts[4])  # nearest earlier frame
    np.testing.assert_array_equal(pts[6], pts[7])  # nearest later frame
    assert aligner.warp(5, frames[5]).shape == (224, 224, 3)


def test_sequence_without_any_face():
    frames = [np.full((200, 200, 3), 90, np.uint8)] * 4
    with pytest.raises(FaceNotFoundError, match="blank.mp4: no face found in any of the 4 frames"):
        F.align_frames(frames, source="blank.mp4")


@needs_data
def test_sequence_small_moving_face_in_big_frame(anne):
    """A face too small for whole-frame detection is found once, then tracked in a window that follows it."""
    frames, truths = [], []
    for i in range(20):
        s = cv2.getRotationMatrix2D((112.0, 112.0), 3 * np.sin(i / 4), 0.55)
        s[:, 2] += (600 + 3 * i, 300 + 2 * i)
        canvas = np.full((720, 1280, 3), 90, np.uint8)
        frames.append(cv2.warpAffine(anne, s, (1280, 720), dst=canvas, borderMode=cv2.BORDER_TRANSPARENT))
        truths.append(s)
    messages = []
    aligner = F.SequenceAligner(source="wide.mp4", warn=messages.append).fit(frames)
    assert messages == []
    crops = [aligner.warp(i, f) for i, f in enumerate(frames)]
    _check_sequence(aligner, crops, 20)
    # crops undo the (small) synthetic motion: each is close to anne
    errors = [_point_error(F.compose(aligner.matrices[i], truths[i])).max() for i in range(20)]
    assert max(errors) < 6


@needs_data
def test_sequence_late_face_and_two_faces(anne):
    """No face in the first frames, then two faces: the largest is followed, both facts are reported."""
    frames = [np.full((480, 720, 3), 90, np.uint8) for _ in range(2)]
    for i in range(8):
        canvas = np.full((480, 720, 3), 90, np.uint8)
        _paste(canvas, anne, 160, 40, 200)
        _paste(canvas, anne, 260, 380 + i, 100)
        frames.append(canvas)
    messages = []
    aligner = F.SequenceAligner(source="duo.mp4", warn=messages.append).fit(frames)
    assert any("duo.mp4: several faces" in m for m in messages)
    assert any("no face found in 2 of 10 frames (frames 0, 1)" in m for m in messages)
    pts = aligner.points
    assert np.all(pts[:, :, 0] > 380)  # the larger face on the right, in every frame
    np.testing.assert_array_equal(pts[0], pts[2])
