"""Registers the mesh-warp family (pdfgc/families/meshwarp/) with the pipeline's family registry."""
from __future__ import annotations

try:
    from .meshwarp.model import MeshWarpFamily  # noqa: F401 - importing registers it
except ImportError:  # pragma: no cover - the package is being assembled
    pass
