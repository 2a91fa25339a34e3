"""Eye following with each lid variant (issue 19's lid sheet against the painted lids): the follow part of
``meshwarp_controls.py`` (pose, eye and expression videos on 6 portraits, calibrated) with the renderer's lids set.

    python benchmarks/meshwarp_pixels_lids_follow.py --lids sheet      # or painted (the default renderer)

Prints the follow figures (EAR r, gaze r h / v per portrait and their mean) as JSON.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lids", default="painted", help="painted | sheet")
    ap.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE",
                    help="a constant of pdfgc.families.meshwarp's lids or eyes, e.g. lids.CORNER=0.02")
    args, rest = ap.parse_known_args()
    import importlib

    for kv in args.set:
        name, value = kv.split("=", 1)
        mod, attr = name.rsplit(".", 1)
        m = importlib.import_module(f"pdfgc.families.meshwarp.{mod}")
        setattr(m, attr, type(getattr(m, attr))(eval(value)))   # noqa: S307 (a benchmark's own flag)
    from pdfgc.families.meshwarp import warp

    init = warp.WarpRenderer.__init__

    def with_lids(self, *a, **kw):
        if kw.get("lids") is None:
            kw["lids"] = args.lids
        init(self, *a, **kw)

    warp.WarpRenderer.__init__ = with_lids
    import meshwarp_controls

    sys.argv = [sys.argv[0], "--follow-only", "--no-baseline", *rest]
    return meshwarp_controls.main()


if __name__ == "__main__":
    sys.exit(main())
