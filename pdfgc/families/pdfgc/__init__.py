"""The paper's family: the PD-FGC networks (`networks/`, `model.py`, `configs.py`), the official checkpoints and
their verification (`official/`), progressive training (`training/`), the fitted maps from physical controls to
codes (`controls/`) and the adapter the pipeline talks to (`family.py`)."""
