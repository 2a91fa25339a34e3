"""Which driving-source frame drives each output frame.

The official code drops the first two frames of every driving sequence (they pair with the audio's first two
target frames) and loops the rest cyclically: output frame i uses source frame 2 + (i mod (N-2)). That stays the
compatible default; `pingpong` plays forward then backward, `hold` freezes on the last frame, `strict` refuses a
source shorter than the audio.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

MODES = ("loop", "pingpong", "hold", "strict")
OFFICIAL_SKIP = 2


def frames_needed(num_out: int, skip: int = OFFICIAL_SKIP) -> int:
    """Source frames that cover `num_out` output frames without repeating."""
    return num_out + skip


def frame_indices(num_source: int, num_out: int, mode: str = "loop", skip: int = OFFICIAL_SKIP,
                  source: str = "driving source") -> np.ndarray:
    """Source index for each of `num_out` output frames."""
    if mode not in MODES:
        raise InputError(f"unknown driving mode '{mode}' (choose from {', '.join(MODES)})")
    usable = num_source - skip
    if usable < 1:
        raise InputError(f"{source}: has {num_source} frame(s); at least {skip + 1} are needed "
                         f"(the first {skip} are skipped, as in the official code)")
    i = np.arange(num_out)
    if mode == "strict":
        if usable < num_out:
            raise InputError(f"{source}: has {num_source} frames but {num_out + skip} are needed for "
                             f"{num_out} output frames (first {skip} skipped); use --driving-mode loop, "
                             "pingpong or hold to reuse frames")
        return skip + i
    if mode == "loop":
        return skip + i % usable
    if mode == "hold":
        return skip + np.minimum(i, usable - 1)
    # pingpong: 0,1,..,u-1,u-2,..,1,0,1,... (period 2u-2)
    if usable == 1:
        return np.full(num_out, skip)
    period = 2 * usable - 2
    j = i % period
    return skip + np.where(j < usable, j, period - j)
