"""The PyTorch port of dlib's face recognition ResNet (pdfgc.families.meshwarp.dlib_resnet)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pdfgc.errors import InputError
from pdfgc.families.meshwarp.dlib_resnet import (
    MANIFEST_NAME,
    DlibFaceResNet,
    _read_manifest,
    find_faceapi_model_dir,
    load_faceapi_weights,
)

REPO = Path(__file__).resolve().parents[1]
PORTRAIT = REPO / "pdfgc" / "ui" / "examples" / "anne.png"


def _seeded(seed: int = 0) -> DlibFaceResNet:
    """The network in float64 with seeded random weights of a sane scale (activations stay O(1))."""
    model = DlibFaceResNet().double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if p.ndim >= 2:  # conv filters and the fc
                fan_in = math.prod(p.shape[1:])
                p.copy_(noise / math.sqrt(fan_in))
            elif name.endswith(".scale"):
                p.copy_(0.5 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return model.eval()


def _input(batch: int, size: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g, dtype=torch.float64) * 255.0


def test_seeded_shapes_and_pinned_values():
    model = _seeded(0)
    with torch.no_grad():
        out = model(_input(2, 150))
        feats = model.features(_input(2, 128), stages=(1, 2))
    assert out.shape == (2, 128)
    assert [tuple(f.shape) for f in feats] == [(2, 32, 30, 30), (2, 64, 15, 15)]
    assert [tuple(f.shape) for f in model.features(_input(1, 32), stages=(1, 2, 3))] == [
        (1, 32, 6, 6), (1, 64, 3, 3), (1, 128, 1, 1)]
    pinned = torch.tensor([out[0, 0], out[0, 77], out[1, 5], out[1, 127]], dtype=torch.float64)
    expected = torch.tensor(PINNED, dtype=torch.float64)
    torch.testing.assert_close(pinned, expected, atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="at least 103x103"):
        model(_input(1, 96))


PINNED = [-0.38622905, -0.05850739, -0.29132905, -0.51727542]  # out[0, 0], [0, 77], [1, 5], [1, 127]


def _write_model(folder: Path, entries, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = [{"paths": ["face_recognition_model.bin"], "weights": entries}]
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    (folder / "face_recognition_model.bin").write_bytes(data)
    return folder


def test_loader_rejects_wrong_shape_missing_and_truncated_files(tmp_path):
    wrong = [{"name": "conv32_down/conv/filters", "shape": [3, 3, 3, 32], "dtype": "float32"}]
    folder = _write_model(tmp_path / "wrong", wrong, np.zeros(3 * 3 * 3 * 32, np.float32).tobytes())
    with pytest.raises(InputError, match=r"conv32_down/conv/filters.*\[3, 3, 3, 32\].*\[7, 7, 3, 32\]") as err:
        load_faceapi_weights(folder)
    assert MANIFEST_NAME in str(err.value)

    with pytest.raises(InputError, match="is missing"):
        load_faceapi_weights(tmp_path / "nowhere")

    truncated = _write_model(tmp_path / "short", wrong, b"\0" * 100)
    with pytest.raises(InputError, match="face_recognition_model.bin is truncated"):
        load_faceapi_weights(truncated)

    right = [{"name": "conv32_down/conv/filters", "shape": [7, 7, 3, 32], "dtype": "float32"}]
    partial = _write_model(tmp_path / "partial", right, np.zeros(7 * 7 * 3 * 32, np.float32).tobytes())
    with pytest.raises(InputError, match="conv32_down/conv/bias' is missing"):
        load_faceapi_weights(partial)


def test_manifest_dequantizes_uint8(tmp_path):
    entries = [
        {"name": "a", "shape": [2, 2], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "b", "shape": [3], "dtype": "float32"},
    ]
    data = bytes([0, 1, 2, 255]) + np.array([1.5, -2.0, 3.25], np.float32).tobytes()
    tensors = _read_manifest(_write_model(tmp_path / "q", entries, data))
    np.testing.assert_allclose(tensors["a"], [[-1.0, -0.5], [0.0, 126.5]])
    np.testing.assert_allclose(tensors["b"], [1.5, -2.0, 3.25])


def test_real_weights_agree_with_dlib():
    model_dir = find_faceapi_model_dir()
    if model_dir is None:
        pytest.skip("face-api weights not installed: npm install --no-save @vladmandic/face-api@1.7.15")
    try:
        import dlib

        from pdfgc.evaluation.identity import face_recognition_model_path
        predictor = face_recognition_model_path("shape_predictor_5_face_landmarks.dat")
        resnet = face_recognition_model_path("dlib_face_recognition_resnet_model_v1.dat")
    except Exception as exc:  # dlib or face_recognition_models not installed
        pytest.skip(f"dlib and face_recognition_models are needed: {exc}")
    from PIL import Image

    image = np.asarray(Image.open(PORTRAIT).convert("RGB"))
    faces = dlib.get_frontal_face_detector()(image, 1)
    assert faces, f"dlib finds no face in {PORTRAIT}"
    shape = dlib.shape_predictor(predictor)(image, max(faces, key=lambda r: r.area()))
    chip = dlib.get_face_chip(image, shape, size=150, padding=0.25)
    reference = np.array(dlib.face_recognition_model_v1(resnet).compute_face_descriptor(chip))

    model = load_faceapi_weights(model_dir)
    with torch.no_grad():
        ours = model(torch.from_numpy(chip).permute(2, 0, 1)[None].float())[0].numpy()
    distance = float(np.linalg.norm(ours - reference))
    assert distance < 0.05, f"port vs dlib descriptor distance {distance:.4f}"
