"""Issue 23 (xtalk_s33.md): runs of meshwarp_controls.py side by side on their common in-range portraits, by the
averaged meter (each render the mean of its READINGS views) and by the old meter (the first reading; the mean of the
first two), and per render the averaged cross-talks above 1.5 deg in any run.

    PYTHONPATH=. python benchmarks/xtalk_compare.py DIR_A DIR_B ... [--json OUT.json]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meshwarp_controls as MC  # noqa: E402


def figures(rs: list[dict], key: str, steps) -> dict:
    ax = np.array([MC.AXES.index(k) for k, _ in steps])
    want = np.array([v for _, v in steps], np.float64)
    d = np.array([r[key] for r in rs], np.float64)
    ok = np.isfinite(d).all(2)
    err = np.abs(d[:, np.arange(len(ax)), ax] - want)
    xt = np.stack([np.abs(np.delete(d[:, j], ax[j], axis=1)).max(1) for j in range(len(ax))], 1)
    return {"renders": int(ok.sum()), "worst_error": round(float(err[ok].max()), 2),
            "mean_error": round(float(err[ok].mean()), 3), "worst_cross_talk": round(float(xt[ok].max()), 2),
            "mean_cross_talk": round(float(xt[ok].mean()), 3), "cross_talk_over": int((xt[ok] > 1.5).sum()),
            "_xt": np.where(ok, xt, np.nan), "_err": np.where(ok, err, np.nan)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    runs = [json.loads((Path(d) / "controls.json").read_text()) for d in args.dirs]
    names = set.intersection(*[{r["name"] for r in R["per_portrait"] if MC.in_range(r)} for R in runs])
    n = {len(r["pose_calibrated"]) for R in runs for r in R["per_portrait"]}
    steps = MC.POSE_STEPS if n == {len(MC.POSE_STEPS)} else None
    out = {}
    per = {}
    for d, R in zip(args.dirs, runs):
        rs = sorted((r for r in R["per_portrait"] if r["name"] in names), key=lambda r: r["name"])
        st = steps or [tuple(s) for s in R.get("steps", [])] or MC.POSE_STEPS
        row = {}
        for label, key in (("averaged", "pose_mean_calibrated"), ("first_reading", "pose_calibrated")):
            if key in rs[0]:
                row[label] = figures(rs, key, st)
        if "pose_reread_calibrated" in rs[0]:
            for r in rs:
                r["_two"] = (0.5 * (np.array(r["pose_calibrated"], float)
                                    + np.array(r["pose_reread_calibrated"], float))).tolist()
            row["two_readings_mean"] = figures(rs, "_two", st)
        per[d] = (rs, st, row.get("averaged"))
        out[d] = {k: {a: b for a, b in v.items() if not a.startswith("_")} for k, v in row.items()}
        print(d, len(rs), "portraits")
        for k, v in out[d].items():
            print(f"  {k:18s} worst xt {v['worst_cross_talk']:.2f}  >1.5 {v['cross_talk_over']:3d}  mean xt "
                  f"{v['mean_cross_talk']:.3f}  worst err {v['worst_error']:.2f}  mean err {v['mean_error']:.3f}")
    # the renders above 1.5 (averaged) in any run
    hits = set()
    for d, (rs, st, av) in per.items():
        if av is None:
            continue
        for i, j in zip(*np.nonzero(np.nan_to_num(av["_xt"]) > 1.5)):
            hits.add((rs[i]["name"], f"{st[j][0]}{st[j][1]:+d}", i, j))
    rows = []
    for name, ctl, i, j in sorted(hits):
        vals = [per[d][2]["_xt"][i, j] if per[d][2] else np.nan for d in args.dirs]
        rows.append({"render": f"{name} {ctl}", "cross_talk": [round(float(v), 2) for v in vals]})
        print(f"  {name[:45]:45s} {ctl:9s} " + " ".join(f"{v:5.2f}" for v in vals))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": out, "over_1_5": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
