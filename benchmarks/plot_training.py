"""Training curves of one or more `pdfgc train` runs (their log.csv), one panel per stage, as a PNG.

    python benchmarks/plot_training.py runs/s1 runs/s2 runs/s3 runs/s4 -o benchmarks/results/training_curves.png
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

# the losses worth showing per stage (the log holds more)
SHOWN = {
    "appearance": ("image_l1", "face_l1", "feature_matching", "gan", "d_loss"),
    "lips": ("lip_a2v", "lip_v2a", "lip_top1", "mouth_l1", "cross_modal"),
    "pose_eye": ("pose_deg_err", "eye_contrastive", "image_l1", "face_l1"),
    "emotion": ("image_l1", "face_l1", "decorrelation", "lip_a2v"),
}


def read_log(run: Path) -> tuple[str, dict[str, list[float]]]:
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{run}/log.csv: no rows")
    cols: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            if k == "stage" or v in ("", None):
                continue
            cols.setdefault(k, []).append(float(v))
    return rows[0]["stage"], cols


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [read_log(r) for r in args.runs]
    fig, axes = plt.subplots(1, len(logs), figsize=(4.5 * len(logs), 3.6), squeeze=False)
    for ax, (stage, cols) in zip(axes[0], logs):
        for name in SHOWN.get(stage, ()):
            if name in cols and len(cols[name]) == len(cols["step"]):
                ax.plot(cols["step"], cols[name], label=name, lw=1)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(f"stage: {stage}")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
