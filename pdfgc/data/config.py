"""The settings of `pdfgc prepare` that change the prepared data (a resumed run must use the same values)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import InputError
from ..vocabulary import ALIGN_MODES
from .corpus import FPS


@dataclass(frozen=True)
class PrepareConfig:
    """Everything that changes the prepared data (a resumed run must use the same values)."""

    min_seconds: float = 1.0
    max_seconds: float = 20.0
    min_face_px: float = 40.0          # as inference: smaller faces are refused
    align: str = "auto"                # auto (224x224 inputs are aligned crops) | always | never
    jpeg_quality: int = 95
    min_valid_fraction: float = 0.8    # share of frames of a shot in which the face must be found
    max_face_gap_s: float = 0.5        # longer runs without a face split the clip and are dropped
    cut_hist: float = 0.30             # Bhattacharyya distance of HSV histograms: a cut on its own
    cut_grey: float = 35.0             # mean abs difference of 32x32 grey thumbnails (0-255): a cut on its own
    cut_hist_soft: float = 0.15        # both of these together: a cut
    cut_grey_soft: float = 20.0
    cut_face_jump: float = 1.0         # move of the eyes' midpoint / eye distance between consecutive frames
    cut_face_scale: float = 0.25       # relative change of the eye distance between consecutive frames

    def __post_init__(self):
        if self.align not in ALIGN_MODES:
            raise InputError(f"unknown align mode {self.align!r} ({', '.join(ALIGN_MODES)})")
        if not self.min_seconds > 0:
            raise InputError(f"--min-seconds must be positive, got {self.min_seconds}")
        if not self.max_seconds >= self.min_seconds:
            raise InputError(f"--max-seconds ({self.max_seconds}) must be at least --min-seconds ({self.min_seconds})")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"JPEG quality must be 1-100, got {self.jpeg_quality}")

    @property
    def min_frames(self) -> int:
        return max(1, int(math.ceil(self.min_seconds * FPS - 1e-9)))

    @property
    def max_frames(self) -> int:
        return max(self.min_frames, int(math.floor(self.max_seconds * FPS + 1e-9)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
