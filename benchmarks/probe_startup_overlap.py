"""Round two of s30 (benchmarks/results/speed_s30.md): would the pose clip's read and face-mesh tracker (the critical
path before the first frame) gain by running beside the start-up's torch import instead of after it?

    PYTHONPATH=. python benchmarks/probe_startup_overlap.py serial    # imports, then the clip read + tracker
    PYTHONPATH=. python benchmarks/probe_startup_overlap.py overlap   # the imports on a thread beside them

Prints the seconds from the start at which the imports, the clip read and the tracker ended."""
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

T0 = time.perf_counter()
DATA = Path(os.environ.get("PDFGC_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "pdfgc"
marks = {}


def heavy():
    import torch  # noqa: F401

    import pdfgc.families.meshwarp.model  # noqa: F401
    import pdfgc.pipeline  # noqa: F401

    marks["imports_end"] = time.perf_counter() - T0


def track():
    from pdfgc.media.driving import open_driving
    from pdfgc.media.mesh import FaceMeshDetector

    clip = open_driving(DATA / "motions/pose/681600002", 374, "auto", False, role="pose source")
    marks["clip_read"] = time.perf_counter() - T0
    uniq = clip.unique_index()
    todo = sorted({int(uniq[i]) for i in range(2, clip.num_frames)})
    with FaceMeshDetector(static_image_mode=False, max_num_faces=1) as tracker:
        for i in todo:
            tracker.detect(np.asarray(clip.crops[i]))
    marks["tracker_end"] = time.perf_counter() - T0
    marks["frames"] = len(todo)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "serial"
    if mode == "serial":
        heavy()
        track()
    else:
        th = threading.Thread(target=heavy)
        th.start()
        track()
        th.join()
    print(mode, {k: round(v, 3) for k, v in marks.items()})
