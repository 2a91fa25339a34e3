"""The package's shared words, defined once: frame rate, driving modes, align modes, precision names.

Configuration names live with the configurations (``families.pdfgc.configs.CONFIG_NAMES``); the official inference rules
(multipliers, smoothing, driving schedule, crop) in ``pdfgc.official_rules``.

The lips factor: ``lips`` is the factor and its source (``--lips``, ``AnimateOptions.lips``, the training stage),
``mouth`` is its per-frame code (``StyleLayout.mouth``, ``Codes.mouth``; ``--mouth-intensity`` scales the code)
and ``lip`` the explicit control (``LipControl``, ``lip_control``, ``--lip-level``); the public names keep these
three roles, internal code uses the same words for the same roles. Mesh landmark rings are ``LIPS_OUTER`` /
``LIPS_INNER`` (``pdfgc.media.mesh_indices``).
"""
from __future__ import annotations

FPS = 25                                               # output and driving frame rate (the official code's)
SAMPLE_RATE = 16000                                    # speech is resampled to 16 kHz mono
DRIVING_MODES = ("loop", "pingpong", "hold", "strict")  # short driving clips (loop: official)
DRIVING_REFERENCES = ("auto", "first")                 # mesh-warp family: a clip's motion relative to which frame
ALIGN_MODES = ("auto", "always", "never")              # face alignment of portraits, driving clips, raw clips
PRECISIONS = ("exact", "fast")                         # inference: fp32, or bf16/fp16 where the device has it
TRAIN_PRECISIONS = ("fp32", "bf16", "fp16")            # training (accelerate's mixed precision)
MESHWARP = "meshwarp"                                  # the default model family's name (pdfgc train --config)
AUTO = "auto"                                          # generated motion source: --pose auto, --blink auto
