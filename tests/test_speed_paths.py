"""The s30 speed changes leave every pixel as it was: the render worker threads draw with private copies of the
portrait's renderer (its parts keep per-frame caches) and give the serial loop's frames exactly; the warp's search for
compressed triangles in a window finds the pixels the whole-map search finds; OpenCV runs on the calling thread when
the pipeline's own threads fill the cores."""
from __future__ import annotations

import threading

import cv2
import numpy as np

from pdfgc.families.meshwarp import warp as W
from pdfgc.media import preprocess as pp
from pdfgc.options import AnimateOptions
from pdfgc.pipeline import TalkingHeadPipeline

from .conftest import DATA, need

PD = DATA / "pdfgc"


def test_threaded_render_gives_the_serial_frames_exactly_from_private_renderers(pipes, monkeypatch):
    serial, threaded = pipes
    opt = AnimateOptions(progress=False, max_frames=24, pose=str(need(PD / "motions/pose/681600002")),
                         emotion=str(need(PD / "motions/exp/vox2_id01228_00309")),
                         eyes=str(need(PD / "motions/eye/id01333_00040/images")), batch_size=3)
    plan = serial.plan(need(PD / "anne.png"), str(need(PD / "audio_longer.mp3")), opt)
    fa = np.concatenate([pp.to_uint8(x) for _, x in serial.render(plan, opt)])
    st = plan.appearance
    used = {}
    fam = threaded.family
    real = fam._renderer_of

    def spy(s):
        r = real(s)
        used.setdefault(threading.current_thread().name, set()).add(id(r))
        return r
    monkeypatch.setattr(fam, "_renderer_of", spy)
    fb = np.concatenate([pp.to_uint8(x) for _, x in threaded.render(plan, opt)])
    assert np.array_equal(fa, fb)   # bit-identical, every frame (the eyes and lids draw from keyed caches)
    workers = {k: v for k, v in used.items() if k.startswith("pdfgc-render")}
    assert len(workers) == 2
    ids = set().union(*workers.values())
    assert id(st.renderer) not in ids and len(ids) == 2   # one private copy per worker thread, once per job
    assert real(st) is st.renderer   # the main thread draws with the portrait's own (calibration probes, serial)


def _clamp_whole_map(mx, my, idmap, coef, dst_tri, src_tri):
    """The search over the whole map, as it was before the window (the reference)."""
    lin = coef[:-1, [0, 1, 3, 4]].reshape(-1, 2, 2)
    gain = np.sqrt((lin.astype(np.float64) ** 2).sum((1, 2)))
    bad = np.zeros(len(coef), bool)
    bad[:-1] = gain > 3.0
    ys, xs = np.nonzero(np.take(bad, idmap, mode="clip"))
    return ys, xs


def test_compressed_triangle_window_finds_the_whole_maps_pixels(anne_face, monkeypatch):
    img, mesh = anne_face
    r = W.WarpRenderer(img, mesh)
    seen = []
    real = W.WarpRenderer._clamp_compressed

    def check(self, mx, my, idmap, coef, dst_tri):
        ref_ys, ref_xs = _clamp_whole_map(mx, my, idmap, coef, dst_tri, self._src_tri)
        got = real(self, mx, my, idmap, coef, dst_tri)
        ys, xs = (np.array([], int), np.array([], int)) if got is None else got
        assert np.array_equal(ys, ref_ys) and np.array_equal(xs, ref_xs)
        seen.append(len(ys))
        return got
    monkeypatch.setattr(W.WarpRenderer, "_clamp_compressed", check)
    rng = np.random.default_rng(0)
    for yaw in (0.0, 25.0, -35.0):   # turned heads squeeze the far cheek edge-on
        target = mesh.copy()
        c = target.mean(0)
        a = np.deg2rad(yaw)
        rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        target = (target - c) @ rot.T + c
        target[:, :2] += rng.normal(0, 0.3, (len(target), 2))
        r.render(target)
    assert max(seen) > 0   # some frames had compressed triangles to clamp


def test_opencv_runs_on_the_calling_thread_when_the_pipeline_fills_the_cores(pipes):
    serial, threaded = pipes
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(4)
        TalkingHeadPipeline(serial.model, device="cpu", threads=2)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
