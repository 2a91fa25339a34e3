"""Options declared once: the animate flags and the web page's fields generated from the declarations, each family's
own options reached through the registry, and the one validation done once per job."""
import argparse
import dataclasses

import pytest

from pdfgc.errors import InputError
from pdfgc.families import family_class, list_families
from pdfgc.option_fields import add_option_arguments, declared, options_from_args, web_fields, web_value
from pdfgc.options import AnimateOptions, SharedOptions, check_options

from .conftest import DATA, FIXTURE

ANNE = DATA / "pdfgc" / "anne.png"

# every option flag `pdfgc animate` had before the flags were generated (the README and the tests use them)
ANIMATE_FLAGS = (
    "--lips", "--pose", "--eyes", "--blink", "--gaze", "--emotion", "--motion-seed", "--mouth-intensity",
    "--pose-intensity", "--blink-intensity", "--gaze-intensity", "--emotion-intensity", "--no-mouth-smoothing",
    "--no-pose-smoothing", "--driving-mode", "--driving-skip", "--driving-reference", "--duration", "--max-frames",
    "--layout", "--align", "--precision", "--device", "--threads", "--batch-size", "--crf", "--preset", "--quiet",
    "--refiner", "--no-refiner", "--controls",
)


def _animate_parser():
    from pdfgc.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["animate"]


def test_every_flag_keeps_its_name_and_defaults_give_the_default_options():
    p = _animate_parser()
    flags = {s for a in p._actions for s in a.option_strings}
    assert set(ANIMATE_FLAGS) <= flags
    args = p.parse_args(["--portrait", "x.png", "-o", "o.mp4"])
    assert AnimateOptions(**options_from_args(args, AnimateOptions)) == AnimateOptions()


@pytest.mark.parametrize("argv,field,value", [
    (["--mouth-intensity", "0.5"], "mouth_intensity", 0.5), (["--no-mouth-smoothing"], "mouth_smoothing", False),
    (["--no-pose-smoothing"], "pose_smoothing", False), (["--quiet"], "progress", False),
    (["--refiner"], "refiner", True), (["--no-refiner"], "refiner", False),
    (["--driving-skip", "0"], "driving_skip", 0), (["--driving-reference", "first"], "driving_reference", "first"),
    (["--controls", "m.json"], "control_mapping", "m.json"),
    (["--max-frames", "7"], "max_frames", 7), (["--layout", "panels"], "layout", "panels"),
    (["--motion-seed", "3"], "motion_seed", 3), (["--blink", "auto"], "blink", "auto"),
])
def test_a_flag_sets_its_own_option_only(argv, field, value):
    args = _animate_parser().parse_args(["--portrait", "x.png", "-o", "o.mp4", *argv])
    opt = AnimateOptions(**options_from_args(args, AnimateOptions))
    assert getattr(opt, field) == value
    changed = [f.name for f in dataclasses.fields(opt) if getattr(opt, f.name) != getattr(AnimateOptions(), f.name)]
    assert changed == [field] or (value == getattr(AnimateOptions(), field) and changed == [])


def test_choices_come_from_the_declaration():
    p = _animate_parser()
    with pytest.raises(SystemExit):
        p.parse_args(["--portrait", "x.png", "-o", "o.mp4", "--layout", "sideways"])
    with pytest.raises(SystemExit):
        p.parse_args(["--portrait", "x.png", "-o", "o.mp4", "--driving-reference", "last"])


def test_each_family_declares_its_own_options_in_its_folder():
    shared = {f.name for f in dataclasses.fields(SharedOptions)}
    own = {}
    for name in list_families():
        cls = family_class(name).options
        assert cls.__module__ == f"pdfgc.families.{name}.options"
        for f, d in declared(cls):
            assert d.family == name and f.name not in shared
            own[f.name] = name
        cls.check(AnimateOptions())  # the defaults pass each family's own check
    assert own == {"driving_reference": "meshwarp", "refiner": "meshwarp", "cache": "meshwarp",
                   "control_mapping": "pdfgc"}
    # AnimateOptions carries them all, each once, and the shared options are every family's
    assert {f.name for f in dataclasses.fields(AnimateOptions)} == shared | set(own)
    assert all(d.family is None for _, d in declared(SharedOptions))
    with pytest.raises(InputError, match="unknown driving reference 'x' \\(auto or first\\)"):
        check_options(AnimateOptions(driving_reference="x"))
    with pytest.raises(InputError, match="control mapping"):
        check_options(AnimateOptions(control_mapping="/nonexistent/m.controls.json"))


def test_a_flag_only_for_the_fields_that_have_one():
    names = {f.name for f, d in declared(AnimateOptions) if d.group is not None}
    assert names == {f.name for f in dataclasses.fields(AnimateOptions)} - {
        "pose_control", "blink_control", "gaze_control", "emotion_control", "lip_control"}
    # `pdfgc ui` takes --device/--threads from the same declarations
    p = argparse.ArgumentParser()
    add_option_arguments(p, AnimateOptions, names=("device", "threads"))
    assert vars(p.parse_args(["--threads", "2"])) == {"device": "auto", "threads": 2}


def test_web_fields_and_their_values():
    from pdfgc.ui.settings import BASE_INPUTS
    names = [n for n, _, _ in web_fields(AnimateOptions)]
    assert set(names) == {"mouth_intensity", "pose_intensity", "blink_intensity", "gaze_intensity",
                          "emotion_intensity", "layout", "precision", "driving_mode", "refiner"}
    assert set(names) <= set(BASE_INPUTS)

    class Family:
        def intensity(self, factor):
            return {"mouth": 1.5}.get(factor, 1.2)
    d = {n: (decl, default) for n, decl, default in web_fields(AnimateOptions)}
    assert web_value("mouth_intensity", *d["mouth_intensity"], None, Family()) == 1.5   # empty: the family's
    assert web_value("mouth_intensity", *d["mouth_intensity"], "4.5", Family()) == 4.5  # typed past the slider
    with pytest.raises(InputError, match="^mouth intensity: 5.5 is outside 0..5$"):
        web_value("mouth_intensity", *d["mouth_intensity"], 5.5, Family())
    assert web_value("layout", *d["layout"], None, Family()) == "result"   # the page's own initial value
    assert web_value("refiner", *d["refiner"], None, Family()) is AnimateOptions.refiner
    assert web_value("refiner", *d["refiner"], 1, Family()) is True


# ---- validated once -----------------------------------------------------------------------------------------------
@pytest.fixture
def count_checks(monkeypatch):
    import pdfgc.options as options
    calls = []
    real = options._check_values

    def counted(opt, audio):
        calls.append(opt)
        return real(opt, audio)
    monkeypatch.setattr(options, "_check_values", counted)
    return calls


def test_options_are_checked_once_until_they_change(count_checks, tmp_path):
    opt = AnimateOptions(max_frames=25)
    check_options(opt)
    check_options(opt)
    assert len(count_checks) == 1
    check_options(opt, audio=str(tmp_path / "a.wav"))   # another job's audio: checked again (it bounds the job)
    assert len(count_checks) == 2
    opt.crf = 99                                          # changed since: checked again, and refused
    with pytest.raises(InputError, match="--crf"):
        check_options(opt)
    with pytest.raises(InputError, match="--crf"):
        check_options(opt)
    opt.crf = 18
    check_options(dataclasses.replace(opt))               # a copy carries no mark: checked
    assert len(count_checks) == 5


def test_an_output_is_checked_each_time_and_never_an_input(tmp_path):
    opt = AnimateOptions(lips="still", duration=1.0)
    check_options(opt, output=tmp_path / "o.mp4", inputs=[str(ANNE)])
    with pytest.raises(InputError):
        check_options(opt, output=ANNE, inputs=[str(ANNE)])
    with pytest.raises(InputError, match="does not exist"):
        check_options(opt, output=tmp_path / "missing" / "o.mp4")


def test_the_pipeline_finds_options_checked_by_the_caller(tiny_pipe, count_checks):
    opt = AnimateOptions(lips="still", duration=0.08, progress=False)
    check_options(opt)                                    # as the CLI and the page do, before the model loads
    plan = tiny_pipe.plan(str(ANNE), None, opt)
    assert plan.num_frames == 2 and len(count_checks) == 1
    tiny_pipe.plan(str(ANNE), None, opt, lips="off")      # overrides make new options: checked
    assert len(count_checks) == 2


def test_a_render_checks_its_options_once(tiny_pipe, count_checks, tmp_path):
    opt = AnimateOptions(max_frames=2, progress=False)
    check_options(opt, audio=str(FIXTURE / "clip2s_16k.wav"), output=tmp_path / "o.mp4", inputs=[str(ANNE)])
    res = tiny_pipe(str(ANNE), audio=str(FIXTURE / "clip2s_16k.wav"), output=tmp_path / "o.mp4", options=opt)
    assert res.num_frames == 2 and len(count_checks) == 1   # the CLI's check; the pipeline and its plan find it


def test_a_checked_options_object_keeps_only_its_fields():
    opt = AnimateOptions(max_frames=3)
    check_options(opt)
    assert set(opt.__dict__) == {f.name for f in dataclasses.fields(AnimateOptions)}   # AnimateOptions(**__dict__)
    assert AnimateOptions(**opt.__dict__) == opt
    import gc

    import pdfgc.options as options
    del opt
    gc.collect()
    assert not any(ref() is not None and ref().max_frames == 3 for ref, _ in options._CHECKED.values())
