"""Workers of `pdfgc prepare`: clips prepared in this process or a spawn pool, results written to shards and
recorded as they arrive."""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path

import cv2
from tqdm import tqdm

from ..media.mesh import quiet_native_stderr
from .clip import ClipResult, prepare_clip
from .config import PrepareConfig
from .discover import RawClip
from .shards import ShardWriter, completion_record
from .state import RecordStore, next_shard_index

_WORKER_CFG: PrepareConfig | None = None


def _init_worker(cfg: PrepareConfig, pool_worker: bool = False) -> None:
    global _WORKER_CFG
    _WORKER_CFG = cfg
    cv2.setNumThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if pool_worker and sys.platform.startswith("linux"):
        # a worker dies with the main process (kill -9 included) instead of finishing its clip for nobody
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if pool_worker and not os.environ.get("PDFGC_VERBOSE"):
        # mediapipe's native threads log to fd 2 at unpredictable times and would break the progress bar; a worker
        # reports every problem in its result instead (set PDFGC_VERBOSE=1 to see them)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)


def _work(raw: RawClip) -> ClipResult:
    with quiet_native_stderr():  # mediapipe's C++ log lines; problems go into the result
        return prepare_clip(raw, _WORKER_CFG)


def run_clips(todo: list[RawClip], cfg: PrepareConfig, out: Path, state: RecordStore, records: dict, workers: int,
         progress: bool, shard_bytes: int, shard_seconds: float) -> int:
    writer: ShardWriter | None = None
    pending: list[ClipResult] = []
    pending_offsets: dict[str, dict] = {}
    done = 0

    def commit() -> None:
        nonlocal writer
        if writer is not None:
            writer.close()
            for res in pending:
                rec = completion_record(res, writer.name, pending_offsets)
                state.write(rec)
                records[res.raw_key] = rec
            pending.clear()
            pending_offsets.clear()
            writer = None

    def take(res: ClipResult) -> None:
        nonlocal writer
        if not res.segments:
            rec = completion_record(res, None, {})
            state.write(rec)
            records[res.raw_key] = rec
            return
        if writer is None:
            writer = ShardWriter(out, next_shard_index(out))
        for seg in res.segments:
            pending_offsets[seg.key] = writer.add(seg)
        pending.append(res)
        if writer.size >= shard_bytes or time.monotonic() - writer.opened >= shard_seconds:
            commit()

    bar = tqdm(total=len(todo), unit="clip", desc="preparing", disable=not progress or not todo, file=sys.stderr,
               dynamic_ncols=True)
    frames = 0
    pool = None
    try:
        if workers == 1 or len(todo) <= 1:
            _init_worker(cfg)
            results = (_work(c) for c in todo)
        else:
            # spawn: mediapipe and PyAV are not fork-safe once initialised; every worker builds its own detectors
            pool = mp.get_context("spawn").Pool(min(workers, len(todo)), initializer=_init_worker, initargs=(cfg, True),
                                                maxtasksperchild=200)
            results = pool.imap_unordered(_work, todo, chunksize=1)
        for res in results:
            take(res)
            done += 1
            frames += sum(s.info["num_frames"] for s in res.segments)
            bar.set_postfix(frames=frames, refresh=False)
            bar.update(1)
        commit()
    except BaseException:
        # an interrupt (Ctrl-C) keeps the clips already in the open shard: the tar holds complete clips only
        if writer is not None:
            with contextlib.suppress(Exception):
                commit()
            if writer is not None:
                writer.abort()
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return done
