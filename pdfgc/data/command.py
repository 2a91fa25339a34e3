"""`pdfgc prepare`: the command-line front of ``pdfgc.data.prepare``."""
from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from ..vocabulary import ALIGN_MODES

EXAMPLES = """examples:
  pdfgc prepare ../shared/data -o prepared --workers 2 --exclude 'pdfgc/reference_outputs/*'
  pdfgc prepare /data/voxceleb2/dev/mp4 -o vox --workers 16 --shard 0/4      # machine 1 of 4 (then 1/4, 2/4, 3/4)
  pdfgc prepare --merge vox0 vox1 vox2 vox3 -o vox                             # join the four parts
"""


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="raw talking-face videos -> training shards (faces aligned, audio, labels)",
                       description="Find every clip under RAW_DIR (videos; numbered frame folders; VoxCeleb2 and "
                                   "MEAD layouts are recognised), align the face per frame exactly as inference "
                                   "does, compute audio windows, face mesh, head pose, eye and mouth labels, and "
                                   "write webdataset-style tar shards with manifest.json and rejected.json. "
                                   "Resumable: run the same command again to continue.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("raw_dir", nargs="?", metavar="RAW_DIR", help="folder of raw clips (any layout)")
    p.add_argument("-o", "--output", required=True, help="output folder (shards, manifest.json, rejected.json)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--shard", metavar="i/N", help="only every N-th clip starting at i (split a corpus over machines)")
    p.add_argument("--exclude", nargs="+", action="extend", default=[], metavar="GLOB",
                   help="skip clips/folders whose path relative to RAW_DIR matches (fnmatch; '*' crosses '/')")
    p.add_argument("--heldout", metavar="FILE", help="held-out list (default: the packaged pdfgc/data/heldout.txt)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="longer shots are split (default 20)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="shorter shots are rejected (default 1)")
    p.add_argument("--min-face-px", type=float, default=40.0, help="smaller faces are rejected (default 40)")
    p.add_argument("--align", default="auto", choices=ALIGN_MODES,
                   help="auto: 224x224 inputs are taken as aligned crops (as inference); always; never (resize)")
    p.add_argument("--jpeg-quality", type=int, default=95)
    p.add_argument("--no-frame-folders", action="store_true", help="only video files are clips")
    p.add_argument("--shard-size", type=float, default=512, metavar="MB", help="target shard size (default 512)")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="join prepared folders (e.g. --shard parts) into -o")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from .prepare import PrepareConfig, merge_corpora, prepare_corpus

    if args.merge:
        if args.raw_dir:
            raise InputError("--merge joins prepared folders: give no RAW_DIR with it")
        merge_corpora(args.merge, args.output)
        return 0
    if not args.raw_dir:
        raise InputError("prepare needs RAW_DIR (the folder of raw clips), or --merge DIR ...")
    cfg = PrepareConfig(min_seconds=args.min_seconds, max_seconds=args.max_seconds, min_face_px=args.min_face_px,
                        align=args.align, jpeg_quality=args.jpeg_quality)
    summary = prepare_corpus(args.raw_dir, args.output, cfg, workers=args.workers, shard=args.shard,
                             exclude=args.exclude, heldout=args.heldout, frames_folders=not args.no_frame_folders,
                             progress=not args.quiet, shard_bytes=int(args.shard_size * (1 << 20)))
    print(f"pdfgc: prepared {summary.describe()}", file=sys.stderr)
    summary.check_kept()  # every clip rejected: exit 2, not 0
    return 0
