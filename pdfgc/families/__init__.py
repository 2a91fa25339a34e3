"""Model families: each turns a portrait plus per-factor codes into frames, behind one interface
(`pdfgc.families.base`). `pdfgc` (the PD-FGC networks: official checkpoints, GPU training) and `meshwarp` (the
default: face-mesh codes, a 3D-aware warp of the portrait's own pixels) are the two implementations."""
