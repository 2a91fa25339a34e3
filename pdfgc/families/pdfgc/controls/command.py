"""`pdfgc fit-controls`'s flags, without torch (the parser is built before any model is loaded; `fit.py` runs it)."""
from __future__ import annotations

FER_MODES = ("auto", "always", "never")  # fer's labels: for unlabelled clips, for every clip, never


def add_parser(sub) -> None:
    p = sub.add_parser("fit-controls", help="fit the explicit-control mappings of a model on prepared data",
                       description="Read prepared frames (pdfgc prepare) with the model's motion encoder and fit "
                                   "physical value -> code mappings for the explicit controls; writes "
                                   "<weights stem>.controls.json beside the weights (found there by animate).")
    w = p.add_mutually_exclusive_group(required=True)
    w.add_argument("--weights", help="a pdfgc .safetensors file")
    w.add_argument("--official-checkpoints", help="folder with the four official .pth files (output: "
                                                  "DIR/controls.json unless -o)")
    p.add_argument("--data", required=True, help="prepared corpus folder (pdfgc prepare output)")
    p.add_argument("-o", "--output", help="mapping file (default: beside the weights)")
    p.add_argument("--frames-per-clip", type=int, default=48, help="uniformly sampled frames per clip (default 48)")
    p.add_argument("--extremes", type=int, default=6,
                   help="also the N most closed-eye and N most closed-mouth frames of each clip (default 6)")
    p.add_argument("--max-clips", type=int, help="use at most this many clips")
    p.add_argument("--fer", default="auto", choices=FER_MODES,
                   help="emotion labels from fer's classifier: for clips without a label (auto), always, never")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--keep-cache", action="store_true", help="keep the per-clip code cache after fitting")
    p.add_argument("--quiet", action="store_true")
