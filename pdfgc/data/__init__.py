"""Training data: find raw clips (``discover``), prepare them into shards (``prepare``), read them (``corpus``)."""
from .corpus import ClipInfo, PreparedClip, PreparedCorpus

__all__ = ["ClipInfo", "PreparedClip", "PreparedCorpus"]
