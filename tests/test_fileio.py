import os

import numpy as np
import pytest

from pdfgc.fileio import atomic_path, temp_path, write_atomic


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    out = tmp_path / "a.json"
    out.write_text("old")
    write_atomic(out, '{"x": 1}')
    assert out.read_text() == '{"x": 1}'
    write_atomic(out, b"\x00\x01", fsync=True)
    assert out.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_atomic_path_error_keeps_the_old_file_and_removes_the_partial_one(tmp_path):
    out = tmp_path / "cache.npz"
    out.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.npz"]


def test_temp_name_is_hidden_per_process_and_keeps_the_suffix(tmp_path):
    tmp = temp_path(tmp_path / "step-1.png")
    assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.suffix == ".png"
    assert f".tmp-{os.getpid()}-" in tmp.name
    assert temp_path(tmp_path / "step-1.png") != tmp  # two writers of one file never share a temporary name
    with atomic_path(tmp_path / "arr.npz") as t:
        np.savez(t, a=np.arange(3))  # numpy keeps an .npz name as given
    assert np.load(tmp_path / "arr.npz")["a"].tolist() == [0, 1, 2]
