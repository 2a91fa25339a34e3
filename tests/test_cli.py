"""The command line, end to end on tiny weights: real photos and videos in, playable mp4 out, clear errors."""
import re

import av
import pytest

from pdfgc.cli import main

from .conftest import DATA, FIXTURE, need

PD = DATA / "pdfgc"
ED = DATA / "edtalk"


@pytest.fixture(scope="module")
def tiny_weights(tiny, tmp_path_factory):
    return str(tiny.save_pretrained(tmp_path_factory.mktemp("w") / "tiny.safetensors"))


def _info(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(video=0))
        w, h = v.codec_context.width, v.codec_context.height
    with av.open(str(path)) as c:
        has_audio = bool(c.streams.audio)
    return n, w, h, has_audio


def test_animate_official_demo_inputs(tiny_weights, tmp_path, capsys):
    out = tmp_path / "anne.mp4"
    rc = main(["animate", "--weights", tiny_weights, "--portrait", str(PD / "anne.png"),
               "--audio", str(FIXTURE / "clip2s_16k.wav"), "--pose", str(PD / "motions/pose/681600002"),
               "--emotion", str(PD / "motions/exp/vox2_id01228_00309"),
               "--eyes", str(PD / "motions/eye/id01333_00040/images"), "--layout", "panels", "--quiet",
               "-o", str(out)])
    assert rc == 0
    assert _info(out) == (47, 1120, 224, True)
    err = capsys.readouterr().err
    # --quiet keeps the warning about seeded weights but drops the status lines
    assert "SEEDED RANDOM WEIGHTS" in err and "wrote" not in err and "pdfgc: model" not in err


def test_animate_uncropped_photo_and_driving_video_pasteback(tiny_weights, tmp_path, capsys):
    out = tmp_path / "photo.mp4"
    rc = main(["animate", "--weights", tiny_weights, "--portrait", str(need(ED / "uncrop_face.jpg")),
               "--audio", str(ED / "speech_44k.wav"), "--pose", str(ED / "pose_source1.mp4"),
               "--eyes", str(ED / "pose_source1.mp4"), "--layout", "pasteback", "--max-frames", "20",
               "-o", str(out)])
    assert rc == 0
    assert f"pdfgc: wrote {out} (20 frames" in capsys.readouterr().err   # without --quiet: the status lines
    n, w, h, has_audio = _info(out)
    assert (n, w, h, has_audio) == (20, 840, 1024, True)


def test_lips_from_a_video_without_audio(tiny_weights, tmp_path):
    out = tmp_path / "lips.mp4"
    rc = main(["animate", "--weights", tiny_weights, "--portrait", str(PD / "anne.png"),
               "--lips", str(need(ED / "mouth_source.mp4")), "--max-frames", "12", "--quiet", "-o", str(out)])
    assert rc == 0
    assert _info(out)[:3] == (12, 224, 224)


@pytest.mark.parametrize("case,match", [
    ("no_face", "no face"),
    ("missing_audio", "no such|not found|does not exist"),
    ("bad_output_dir", "does not exist"),
    ("audio_for_pose", "cannot come from audio"),
])
def test_bad_input_exits_nonzero_with_one_message(tiny_weights, tmp_path, capsys, case, match):
    import numpy as np
    from PIL import Image

    portrait, audio, out, extra = str(PD / "anne.png"), str(FIXTURE / "clip2s_16k.wav"), tmp_path / "o.mp4", []
    if case == "no_face":
        grey = tmp_path / "grey.jpg"
        Image.fromarray(np.full((400, 300, 3), 128, np.uint8)).save(grey)
        portrait = str(grey)
    elif case == "missing_audio":
        audio = str(tmp_path / "nope.wav")
    elif case == "bad_output_dir":
        out = tmp_path / "missing" / "o.mp4"
    elif case == "audio_for_pose":
        extra = ["--pose", "audio"]
    rc = main(["animate", "--weights", tiny_weights, "--portrait", portrait, "--audio", audio, "--quiet",
               "-o", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [l for l in err.splitlines() if l.startswith("pdfgc: error:")]
    assert len(lines) == 1 and re.search(match, lines[0], re.I), lines
    assert "Traceback" not in err
    assert not out.exists()


def test_huge_portrait_is_refused_before_decoding(tiny_weights, tmp_path, capsys):
    import struct
    import zlib

    # a valid PNG header claiming 10000x10000 pixels (tiny file): refused from its header
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10000, 10000, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    big = tmp_path / "big.png"
    big.write_bytes(png)
    rc = main(["animate", "--weights", tiny_weights, "--portrait", str(big), "--audio",
               str(FIXTURE / "clip2s_16k.wav"), "--quiet", "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert rc == 2 and "big.png" in err and "10000" in err


def test_convert_and_verify_commands_reject_bad_folders(tmp_path, capsys):
    assert main(["convert-official", str(tmp_path), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "appearance_model.pth" in capsys.readouterr().err
    assert main(["verify-official", str(tmp_path)]) == 2
    assert "fixture.json" in capsys.readouterr().err


def _run_fresh(code: str) -> None:
    """Run `code` in a fresh interpreter on this checkout; it must exit 0."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stderr


def test_animate_parser_imports_no_torch():
    # `pdfgc animate` builds its parser and options without torch or a family's modules (the job imports them):
    # in a fresh interpreter, as `main` builds it
    code = ("import sys, pdfgc.cli as c\n"
            "ap = c.build_parser(c.command_word(['-v', 'animate', '--help']))\n"
            "from pdfgc.options import AnimateOptions\n"
            "assert {'driving_reference', 'refiner'} <= set(AnimateOptions.__dataclass_fields__)\n"
            "heavy = [m for m in ('torch', 'cv2', 'pdfgc.families.base', 'pdfgc.families.meshwarp.model')"
            " if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    _run_fresh(code)


def test_whole_parser_imports_no_torch():
    # `pdfgc --help` and every command's parser (train's families' flags included) are built without torch or a
    # family's module: the families declare their training in their light options modules
    code = ("import sys, pdfgc.cli as c\n"
            "ap = c.build_parser()\n"
            "from pdfgc.families import family_training, list_families\n"
            "assert all(family_training(n).configs for n in list_families())\n"
            "heavy = [m for m in ('torch', 'cv2', 'pdfgc.families.base', 'pdfgc.families.meshwarp.model',"
            " 'pdfgc.families.pdfgc.family', 'pdfgc.evaluation.evaluate') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    _run_fresh(code)


def test_command_parsers_match_the_whole_parser(monkeypatch, capsys):
    # each command parsed by its own parser (`main`) has the help (so the flags) of the whole parser's
    import pdfgc.cli as c

    monkeypatch.setenv("COLUMNS", "100")
    assert c.command_word(["-v", "train", "--data", "x"]) == "train"
    assert c.command_word(["--help"]) is None and c.command_word(["anim"]) is None
    whole = c.build_parser()
    for cmd in c.COMMANDS:
        texts = []
        for parser in (whole, c.build_parser(cmd)):
            with pytest.raises(SystemExit):
                parser.parse_args([cmd, "--help"])
            texts.append(capsys.readouterr().out)
        assert texts[0] == texts[1] and cmd in texts[0], cmd


def test_exit_now_runs_exit_handlers_and_flushes():
    # a command-line `pdfgc animate` that succeeded ends with `_exit_now`: the exit handlers run and buffered
    # output is written, only the interpreter's teardown is skipped (main(argv) from Python never calls it)
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import atexit, sys, pdfgc.cli as c\n"
            "atexit.register(lambda: print('handler ran'))\n"
            "sys.stdout.write('buffered ')\n"
            "c._exit_now(0)\n"
            "print('not reached')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0 and r.stdout == "buffered handler ran\n", (r.stdout, r.stderr)
