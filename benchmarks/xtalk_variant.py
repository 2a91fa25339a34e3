"""Issue 23 (xtalk_s32.md): meshwarp_controls.py with the pose calibration's probe / refine sizes patched.

    PYTHONPATH=. python benchmarks/xtalk_variant.py '{"refine": {"0": [12, 24, 36]}}' --pose-only --no-baseline \
        --out DIR [--steps yaw:15,-15,27,-27,33,-33]

The JSON sets ``calibration.PROBES`` ("probes") and ``calibration.REFINE`` ("refine") per axis (0 yaw, 1 pitch,
2 roll), and ``REFINE_AGAIN`` ("again"), ``REFINE_AGAIN_REACH`` ("reach"), ``ZERO_VIEWS`` ("zero_views"),
``READINGS`` ("readings");
``--steps AXIS:V,...`` replaces the benchmark's pose requests (off-grid checks). The other arguments go to
meshwarp_controls.py (``--pose-only`` needs DIR/controls.json: copy one there first).
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the calibration constants a variant's JSON may set besides "probes" / "refine": key -> calibration.py's name
KNOBS = (("again", "REFINE_AGAIN"), ("again_cross", "REFINE_AGAIN_CROSS"), ("zero_views", "ZERO_VIEWS"),
         ("readings", "READINGS"), ("read_more", "READ_MORE"),
         ("reach", "REFINE_AGAIN_REACH"))
from pdfgc.families.meshwarp import calibration as CAL  # noqa: E402

v = json.loads(sys.argv[1])
args = sys.argv[2:]
for key, name in (("probes", "PROBES"), ("refine", "REFINE")):
    if key in v:
        setattr(CAL, name, {**getattr(CAL, name), **{int(k): tuple(map(float, x)) for k, x in v[key].items()}})
for key, name in KNOBS:
    if key in v:
        setattr(CAL, name, type(getattr(CAL, name))(v[key]))
CAL.refine.__defaults__ = (CAL.REFINE,)
for f in (CAL.read_all, CAL.read_angles):   # their default readings: READINGS as patched
    f.__defaults__ = (CAL.READINGS,)
import meshwarp_controls as MC  # noqa: E402

if "--steps" in args:
    i = args.index("--steps")
    ax, vals = args[i + 1].split(":")
    MC.POSE_STEPS = [(ax, int(x)) for x in vals.split(",")]
    del args[i:i + 2]
print("PROBES", CAL.PROBES, "REFINE", CAL.REFINE, "REFINE_AGAIN", CAL.REFINE_AGAIN, "ZERO_VIEWS", CAL.ZERO_VIEWS,
      "READINGS", CAL.READINGS, "steps", MC.POSE_STEPS, flush=True)
sys.argv = ["meshwarp_controls.py"] + args
sys.exit(MC.main())
