"""Issue 23 (xtalk_s32.md): explicit pose read back with the fill changed in the calibration's probes and the renders
apart. def: as shipped; nodet: no cheek texture (FILL_DETAIL 0); nofill: no far-side fill (fill_stretched off).

    PYTHONPATH=. python benchmarks/xtalk_fill_probe.py "Macron.png [photo]|source_s9.jpg [tight256]" \\
        "def:def,nodet:nodet,nofill:nofill,nofill:def,def:nofill" OUT.json
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meshwarp_controls as MC  # noqa: E402

from pdfgc.families.meshwarp import model as M  # noqa: E402

MODE = {"render": "def", "cal": "def"}


def setmode(r, mode: str) -> None:
    """The renderer's fill as shipped (def), without the cheek texture (nodet) or without the fill (nofill)."""
    if not hasattr(r, "_orig"):
        r._orig = (r._fill_from, r._fill_full, r._detail, getattr(r, "_detail_pm", None))
    r._fill_from, r._fill_full, r._detail, r._detail_pm = r._orig
    if mode in ("nodet", "nofill"):
        r._detail = None
    if mode == "nofill":
        r._fill_from, r._fill_full = 0.0, 0.0


def main() -> None:
    from pdfgc.media.images import load_image_rgb
    from pdfgc.media.mesh import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model
    cases, variants, out_path = sys.argv[1].split("|"), [v.split(":") for v in sys.argv[2].split(",")], sys.argv[3]
    torch.set_num_threads(2)
    MC._patch_calibration_switch()
    orig_enc, orig_cal = M.MeshWarpFamily.encode_portrait, M.MeshWarpFamily.calibrate_pose

    def enc(self, portrait, prec, opt=None):
        st, z = orig_enc(self, portrait, prec, opt)
        setmode(st.renderer, MODE["render"])
        return st, z

    def cal(self, st):
        setmode(st.renderer, MODE["cal"])
        try:
            return orig_cal(self, st)
        finally:
            setmode(st.renderer, MODE["render"])
    M.MeshWarpFamily.encode_portrait, M.MeshWarpFamily.calibrate_pose = enc, cal
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    det = FaceMeshDetector(static_image_mode=True, max_num_faces=1)
    photos = dict([(p.name, load_image_rgb(p)) for p in MC.SHIPPED])
    if any(c.startswith("heldout") for c in cases):
        photos.update(MC.heldout_frames())
    res = []
    for name in cases:
        person, framing = name.rsplit(" [", 1)
        photo = photos[person]
        img = {"photo": lambda: photo, "tight256": lambda: MC.tight_headshot(photo, det),
               "crop224": lambda: pipe.load_portrait(photo).crop}[framing[:-1]]()
        for c, r in variants:
            MODE["cal"], MODE["render"] = c, r
            pipe.family._calibrations.clear()   # the cache's key does not see the fill
            t0 = time.time()
            out = MC.run_portrait(pipe, det, name, img, [True], pose_only=True)
            out.pop("frames_pose", None)
            out["cal_mode"], out["render_mode"] = c, r
            res.append(out)
            d = np.array(out["pose_calibrated"])
            xt = [np.abs(np.delete(d[j], MC.AXES.index(ax))).max() for j, (ax, _) in enumerate(MC.POSE_STEPS)]
            print(f"{name[:40]:40s} cal={c:6s} ren={r:6s} yaw-30 {d[5].round(2).tolist()} worst xt {max(xt):.2f} "
                  f"over1.5 {sum(x > 1.5 for x in xt)} {time.time() - t0:.0f}s", flush=True)
            Path(out_path).write_text(json.dumps(res))


if __name__ == "__main__":
    main()
