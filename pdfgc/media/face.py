"""Face detection and PC-AVS "224 alignment": turn photos and video frames into the crops the networks expect.

PD-FGC's networks see 224x224 RGB crops aligned the PC-AVS way (spec 2.1, ``scripts/align_68.py``): a similarity
transform puts the eye centres and the inner-mouth centre on a fixed template, then the translation is corrected
so the mouth centre lands exactly on its target. PC-AVS uses 68 FAN landmarks; we use mediapipe's face mesh
(0.10.21, legacy ``FaceMesh(refine_landmarks=True)``, 478 points, bundled models, nothing downloaded) and a template
measured for mediapipe's points (see ``MEDIAPIPE_TEMPLATE``).

- ``align_portrait`` aligns one photo (static-image mode) and returns a ``FaceAlignment`` that keeps the matrix, so
  ``paste_back`` can put a generated 224 face back into the original picture with a feathered edge.
- ``SequenceAligner`` / ``align_frames`` align a driving video the PC-AVS way: ONE similarity per video from the
  average points (head roll and scale stay visible to the pose encoder), a per-frame translation that pins the
  mouth, smoothed as bias = 0.8*current + 0.2*previous. Two passes, so long videos need not be held in memory.
- ``load_image_rgb`` reads any photo safely (EXIF orientation, odd modes, a pixel limit checked before decoding).

mediapipe's face detector sees a 128 px letterboxed copy of the whole image, so it misses faces narrower than about
a tenth of the image's long side (a 115 px face in a 1280x720 frame is not found). When the whole image yields no
face we search overlapping square windows, coarse to fine, and for videos we then follow the face inside a fixed
window around it.

Measured here (2 CPU cores, mediapipe 0.10.21, warm): importing mediapipe and building the first FaceMesh ~0.4 s
(later ones ~10 ms); static-mode detection ~4.5 ms per image, for a 224 crop as for 840x1024 and 720x1280 photos
(mediapipe works on downscaled copies); ``align_portrait`` on such a photo, detector built per call, ~20 ms; the
224 warp ~1-5 ms. Video: tracking mode ~3.4 ms per 512x512 frame, SequenceAligner pass 1 ~4 ms and pass 2 ~1.3 ms
per frame. A face small enough to need the window search: ~0.1-0.3 s; an image with no face: ~0.1 s (640x480) to
~0.5 s (4000x3000).

The code is split along its seams: ``geometry.py`` (templates, affines, ``FaceAlignment``), ``images.py`` (both
image readers), ``mesh.py`` (the mediapipe wrapper), ``alignment.py`` (photos and videos) and ``pasteback.py``
(to the crop and back); this module keeps their names in one place.
"""
from ..official_rules import SIZE as CROP_SIZE
from .alignment import SequenceAligner, WarnFn, align_frames, align_portrait, looks_like_aligned_crop
from .geometry import (
    LEFT_EYE_IDX,
    MEDIAPIPE_TEMPLATE,
    MOUTH_IDX,
    NETWORK_VIEW_MATRIX,
    PCAVS_FAN_TEMPLATE,
    RIGHT_EYE_IDX,
    FaceAlignment,
    alignment_matrix,
    apply_affine,
    compose,
    face_size,
    matrix_scale,
    network_view_matrix,
    similarity_transform,
    three_points,
)
from .images import DEFAULT_MAX_PIXELS, _as_rgb_uint8, load_image_rgb, read_image_rgb
from .mesh import FaceMeshDetector, find_faces, quiet_native_stderr
from .pasteback import feather_mask, paste_back, warp_to_crop

__all__ = ["CROP_SIZE", "DEFAULT_MAX_PIXELS", "FaceAlignment", "FaceMeshDetector", "LEFT_EYE_IDX", "MEDIAPIPE_TEMPLATE",
           "MOUTH_IDX", "NETWORK_VIEW_MATRIX", "PCAVS_FAN_TEMPLATE", "RIGHT_EYE_IDX", "SequenceAligner", "WarnFn",
           "_as_rgb_uint8", "align_frames", "align_portrait", "alignment_matrix", "apply_affine", "compose",
           "face_size", "feather_mask", "find_faces", "load_image_rgb", "looks_like_aligned_crop", "matrix_scale",
           "network_view_matrix", "paste_back", "quiet_native_stderr", "read_image_rgb", "similarity_transform",
           "three_points", "warp_to_crop"]
