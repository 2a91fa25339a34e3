"""The mesh-warp family, the package's default model: codes measured from mediapipe's 478-point face mesh, and a
3D-aware warp of the portrait's own pixels (identity is kept for free).

Shared conventions (every module of this package follows them):

- A *mesh* is mediapipe's (478, 3) float array in the pixels of the image it was measured on: x right, y down,
  z on x's scale, larger z = farther from the camera (468 mesh points + 10 iris points: 468..472 the image-left
  eye's iris, 473..477 the other). Angle and eye conventions are those of `pdfgc.evaluation.signals` (yaw > 0 turns
  the face toward the image's right, pitch > 0 chin up, roll > 0 clockwise), so what a code requests is what
  `pdfgc evaluate` measures.
- `codes.py`: a mesh -> per-factor codes in a canonical frame (pose removed, scale normalised), and codes +
  the portrait's mesh -> a target mesh in the portrait's pixels.
- `warp.py`: the portrait image + its mesh + a target mesh -> a frame (a dense piecewise-affine warp of the 3D mesh,
  back faces hidden, motion extended to hair and neck, background still, procedural mouth interior and lids).
"""
