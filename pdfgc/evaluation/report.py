"""Evaluation output: one JSON with every figure, a Markdown table, and per-frame plots (PNG)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..fileio import write_atomic


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else round(float(x), 6)
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_json(obj, path: Path) -> Path:
    return write_atomic(path, json.dumps(_clean(obj), indent=2))


def _f(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}f}"


COLUMNS = [
    ("frames", lambda m: m.get("frames")),
    ("no-face", lambda m: sum(m.get("no_face_frames", {}).values())),
    ("ID dist mean", lambda m: m.get("identity", {}).get("mean_distance")),
    ("ID dist worst", lambda m: m.get("identity", {}).get("worst_distance")),
    ("pose MAE deg (y/p/r)", lambda m: "/".join(_f(m["pose"]["mae_deg"][a], 1) for a in ("yaw", "pitch", "roll"))
     if "pose" in m else None),
    ("pose motion MAE", lambda m: "/".join(_f(m["pose"]["motion_mae_deg"][a], 1) for a in ("yaw", "pitch", "roll"))
     if "pose" in m else None),
    ("pose r (y/p/r)", lambda m: "/".join(_f(m["pose"]["pearson"][a], 2) for a in ("yaw", "pitch", "roll"))
     if "pose" in m else None),
    ("EAR r", lambda m: m.get("blink", {}).get("ear_pearson")),
    ("blink P/R", lambda m: f"{_f(m['blink']['precision'], 2)}/{_f(m['blink']['recall'], 2)}"
     if "blink" in m else None),
    ("gaze r (x/y)", lambda m: f"{_f(m['gaze']['pearson']['x'], 2)}/{_f(m['gaze']['pearson']['y'], 2)}"
     if "gaze" in m else None),
    ("lips r / best (offset)", lambda m: f"{_f(m['lips']['envelope_pearson'], 2)} / "
     f"{_f(m['lips']['best_offset_pearson'], 2)} "
     f"({m['lips']['best_offset_frames']:+d})" if "lips" in m else None),
    ("emotion agree", lambda m: m.get("emotion", {}).get("class_agreement")),
    ("emotion gen/src", lambda m: f"{m['emotion']['generated_top']}/{m['emotion']['source_top']}"
     if "emotion" in m else None),
    ("jitter", lambda m: m.get("temporal", {}).get("landmark_jitter")),
    ("PSNR", lambda m: m.get("quality", {}).get("psnr")),
    ("SSIM", lambda m: m.get("quality", {}).get("ssim")),
]


def markdown_table(results: list[dict]) -> str:
    cols = [c for c in COLUMNS if any(c[1](m) is not None for m in results)]
    lines = ["| case | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m in results:
        cells = []
        for _, get in cols:
            v = get(m)
            cells.append(v if isinstance(v, str) else _f(v))
        lines.append(f"| {m.get('case')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_series(series: dict, path: Path, title: str = "") -> Path | None:
    """Generated vs source, per frame: head pose, eye aspect ratio, gaze, mouth opening vs speech envelope."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    if "gen_pose" in series:
        for i, (ang, c) in enumerate(zip(("yaw", "pitch", "roll"), ("C0", "C1", "C2"))):
            axes[0].plot(series["gen_pose"][:, i], c, label=f"{ang} generated")
            if "src_pose" in series:
                axes[0].plot(series["src_pose"][:, i], c + "--", alpha=0.7, label=f"{ang} source")
        axes[0].set_ylabel("head pose (deg)")
    axes[1].plot(series.get("gen_ear", []), "C0", label="generated")
    if "src_ear" in series:
        axes[1].plot(series["src_ear"], "C1--", label="eye source")
    axes[1].set_ylabel("eye aspect ratio")
    if "gen_gaze" in series:
        axes[2].plot(series["gen_gaze"][:, 0], "C0", label="x generated")
        axes[2].plot(series["gen_gaze"][:, 1], "C2", label="y generated")
        if "src_gaze" in series:
            axes[2].plot(series["src_gaze"][:, 0], "C0--", alpha=0.7, label="x source")
            axes[2].plot(series["src_gaze"][:, 1], "C2--", alpha=0.7, label="y source")
    axes[2].set_ylabel("gaze (iris offset)")

    def z(x):
        x = np.asarray(x, float)
        return (x - np.nanmean(x)) / (np.nanstd(x) + 1e-9)
    if "gen_mouth" in series:
        axes[3].plot(z(series["gen_mouth"]), "C0", label="mouth opening (z)")
    if "audio_envelope" in series:
        axes[3].plot(z(series["audio_envelope"]), "C3", alpha=0.6, label="speech log-RMS (z)")
    axes[3].set_ylabel("lips vs audio")
    axes[3].set_xlabel("frame (25 fps)")
    for ax in axes:
        if ax.lines:
            ax.legend(loc="upper right", fontsize=7, ncol=3)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
