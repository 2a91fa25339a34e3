"""Conformance of every registered model family (timm parametrises over `list_models()`; diffusers has
`PipelineTesterMixin`): a family loads through the registry from its weights file and writes the same format back,
animates through `TalkingHeadPipeline` at its declared frame size, its explicit controls each change only their own
code, and a bad weights file or `pdfgc train --config` is refused with one clear error.

A new family needs tiny weights here (`TINY`: a file of its format in a folder, plus what its controls need
beside it); `test_every_family_has_tiny_weights` fails until it has them."""
from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from pdfgc.cli import main
from pdfgc.controls.explicit import (
    POSE_CHANNELS,
    BlinkControl,
    EmotionControl,
    GazeControl,
    LipControl,
    PoseControl,
)
from pdfgc.errors import CheckpointError, InputError
from pdfgc.families import family_class, family_for_config, family_for_format, list_families
from pdfgc.families.base import FACTOR_CODES, family_of, train_configs
from pdfgc.pipeline import AnimateOptions, TalkingHeadPipeline
from pdfgc.weights import load_model, weights_format

from .conftest import DATA, need, one_error

PD = DATA / "pdfgc"
ANNE = PD / "anne.png"
FACE_VIDEO = PD / "motions/pose/681600002"   # a speaking face (frames folder): drives the lips in the control test


def _tiny_pdfgc(folder):
    """The tiny PD-FGC networks, with a synthetic control mapping beside them (where `find_mapping` looks)."""
    from pdfgc.families.pdfgc.controls.mapping import (
        BLINK_INPUTS,
        GAZE_INPUTS,
        ControlMappings,
        LinearMap,
        mapping_path_for,
        model_fingerprint,
    )
    from pdfgc.families.pdfgc.model import BLINK_DIMS, GAZE_DIMS
    from pdfgc.families.pdfgc.testing import tiny_model

    model = tiny_model(0)
    path = family_class("pdfgc").save(model, folder / "tiny.safetensors")
    rng = np.random.default_rng(5)
    lay = model.layout
    ControlMappings(
        model_sha256=model_fingerprint(model), model_name=model.config.name,
        pose=LinearMap(list(POSE_CHANNELS), list(range(lay.pose)), rng.normal(size=(6, lay.pose)) * 0.05,
                       rng.normal(size=lay.pose)),
        blink=LinearMap(list(BLINK_INPUTS), list(BLINK_DIMS), rng.normal(size=(2, 4)), rng.normal(size=4)),
        gaze=LinearMap(list(GAZE_INPUTS), list(GAZE_DIMS), rng.normal(size=(2, 2)), rng.normal(size=2)),
        emotion_means={k: rng.normal(size=lay.emotion) for k in ("happy", "neutral")},
        emotion_neutral=rng.normal(size=lay.emotion), mouth_closed=rng.normal(size=lay.mouth),
    ).save(mapping_path_for(path))
    return path


def _tiny_meshwarp(folder):
    """The shipped mesh-warp parameters (a few hundred kB: they are the family's smallest working weights), written
    anew through the family, without its refiner."""
    from pdfgc.families.meshwarp.model import MeshWarpModel
    from pdfgc.families.meshwarp.params import load_params

    return family_class("meshwarp").save(MeshWarpModel(load_params()), folder / "tiny_meshwarp.safetensors")


TINY = {"pdfgc": _tiny_pdfgc, "meshwarp": _tiny_meshwarp}
FAMILIES = list_families()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = TINY[name](tmp_path_factory.mktemp(name))
        return cache[name]
    return get


@pytest.fixture(scope="module")
def pipes(weights):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = TalkingHeadPipeline(load_model(weights(name)), device="cpu", threads=1)
        return cache[name]
    return get


def test_every_family_has_tiny_weights():
    assert FAMILIES == sorted(TINY), "a registered family needs tiny weights in TINY"
    assert len({family_class(n).format for n in FAMILIES}) == len(FAMILIES)   # a format names one family
    assert sorted(train_configs()) == sorted(set(train_configs()))            # a --config names one family


# ---- weights: the registry finds the family by the file's format; the family writes the same format back -----------
@pytest.mark.parametrize("name", FAMILIES)
def test_loads_through_the_registry_and_round_trips_its_format(name, weights, tmp_path):
    cls = family_class(name)
    path = weights(name)
    assert weights_format(path) == cls.format and family_for_format(cls.format, path) is cls
    model = load_model(weights=path)
    assert family_of(model) is cls
    again = cls.save(model, tmp_path / "again.safetensors")
    assert weights_format(again) == cls.format
    back = load_model(weights=again)
    assert family_of(back) is cls
    fam, fam_back = cls(model, torch.device("cpu")), cls(back, torch.device("cpu"))
    assert fam.code_dims == fam_back.code_dims and fam.info()["family"] == name


@pytest.mark.parametrize("name", FAMILIES)
def test_bad_weights_files_are_one_clear_error(name, weights, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    good = weights(name)
    with safe_open(str(good), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata() or {})
    # another format: refused by the registry, naming the file and the formats it knows
    other = tmp_path / "other.safetensors"
    save_file(tensors, str(other), metadata={**meta, "format": "no-such-format"})
    with pytest.raises(CheckpointError) as e:
        load_model(weights=other)
    msg = str(e.value)
    assert str(other) in msg and "no-such-format" in msg
    assert all(f"'{family_class(n).format}'" in msg for n in FAMILIES)
    # no format at all
    bare = tmp_path / "bare.safetensors"
    save_file(tensors, str(bare))
    with pytest.raises(CheckpointError, match="no 'format' entry"):
        load_model(weights=bare)
    # garbled: the file cut short, through the command line (one error line, exit 2)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert main(["info", "--weights", str(cut)]) == 2
    one_error(capsys, str(cut))
    assert main(["info", "--weights", str(other)]) == 2
    one_error(capsys, str(other), "known formats")


# ---- animation: a short clip through the pipeline, frames of the family's declared size ----------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_short_animation_gives_frames_of_the_declared_size(name, pipes, tmp_path):
    pipe = pipes(name)
    assert pipe.family.name == name
    opt = AnimateOptions(lips="still", duration=0.2, progress=False, layout="result")
    out = tmp_path / f"{name}.mp4"
    res = pipe(need(ANNE), output=out, options=opt)
    size = pipe.family.output_size(res.plan)
    dims = pipe.family.code_dims
    for code in FACTOR_CODES:
        assert getattr(res.plan, code).shape == (5, dims[code])
    frames = torch.cat([x for _, x in pipe.render(res.plan, opt)])
    assert frames.shape == (5, 3, size, size)
    with av.open(str(out)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == res.num_frames == 5 and decoded[0].shape == (size, size, 3)


# ---- explicit controls: each changes its own code and no other ----------------------------------------------------
CONTROLS = {   # control -> the code it owns
    "pose": ({"pose_control": PoseControl(yaw=15)}, "pose"),
    "blink": ({"blink_control": BlinkControl(times=[0.12])}, "blink"),
    "gaze": ({"gaze_control": GazeControl(horizontal=0.5, vertical=-0.2)}, "gaze"),
    "emotion": ({"emotion_control": EmotionControl(label="happy", intensity=0.8)}, "emotion"),
    "lip": ({"lip_control": LipControl(intensity=0.5, mute=[(0.0, 0.12)])}, "mouth"),
}


@pytest.mark.parametrize("name", FAMILIES)
def test_each_explicit_control_changes_only_its_own_code(name, pipes):
    pipe = pipes(name)
    fam = pipe.family
    # lips from a speaking face: a mouth code that a lip control can change (still lips are the zero change in the
    # mesh-warp family)
    base = AnimateOptions(lips=str(need(FACE_VIDEO)), max_frames=8, progress=False)
    ref = pipe.plan(need(ANNE), None, base)
    eye_parts = {"blink": list(fam.blink_dims), "gaze": list(fam.gaze_dims)}
    for control, (kw, own) in CONTROLS.items():
        plan = pipe.plan(need(ANNE), None, AnimateOptions(**{**base.__dict__, **kw}))
        for code in FACTOR_CODES:
            diff = (getattr(plan, code) - getattr(ref, code)).abs()
            if code == "eye" and own in eye_parts:
                other = [d for d in range(diff.shape[1]) if d not in eye_parts[own]]
                assert diff[:, eye_parts[own]].max() > 1e-4, f"{name}: {control} did not change its eye dims"
                assert diff[:, other].max() == 0, f"{name}: {control} changed other eye dims"
            elif code == own:
                assert diff.max() > 1e-4, f"{name}: {control} did not change its {code} code"
            else:
                assert diff.max() == 0, f"{name}: {control} changed the {code} code by {float(diff.max())}"


# ---- training entry: `pdfgc train --config X` finds the family; an unknown --config is one clear error --------------
@pytest.mark.parametrize("name", FAMILIES)
def test_train_configs_find_their_family(name, tmp_path, capsys):
    cls = family_class(name)
    for config in cls.training.configs:
        assert family_for_config(config) is cls
    # a stage of another family is refused, naming the --config that trains it
    for other in FAMILIES:
        o = family_class(other)
        if other == name or not cls.training.configs or not o.training.stages:
            continue
        stage = next(s for s in o.training.stages if s not in cls.training.stages)
        assert main(["train", "--data", str(tmp_path / "nothing"), "--config", cls.training.configs[0], "--stage",
                     stage, "--out", str(tmp_path / "run"), "--steps", "1"]) == 2
        one_error(capsys, f"--stage {stage}", f"--config {'/'.join(o.training.configs)}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", FAMILIES)
def test_declared_training_is_the_class_training(name):
    # the train parser reads the declaration (no torch); the family's class must carry that same object
    from pdfgc.families import family_training
    declared = family_training(name)
    assert family_class(name).training is declared and declared.configs


def test_unknown_config_is_refused(tmp_path, capsys):
    with pytest.raises(InputError, match="no-such-config.*known: .*" + train_configs()[0]):
        family_for_config("no-such-config")
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(tmp_path), "--config", "no-such-config", "--out", str(tmp_path / "r")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-config'" in err and all(c in err for c in train_configs())
    assert not (tmp_path / "r").exists()


def test_fit_controls_asks_the_family(weights, tmp_path, capsys):
    """A family whose controls need no fitted mapping says so in one line (nothing is read or written)."""
    for name in FAMILIES:
        if family_class(name).fitted_controls:
            continue
        path = weights(name)
        assert main(["fit-controls", "--weights", str(path), "--data", str(tmp_path / "nothing")]) == 2
        one_error(capsys, str(path), "need no fitted mapping")
        assert not list(tmp_path.iterdir())
