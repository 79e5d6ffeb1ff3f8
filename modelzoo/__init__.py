"""modelzoo: Lucid-format frozen graphs in TF2, InceptionV1 metadata, Keras adapter, shipped models."""

from lucid_ifv.model import KerasModel, LayerInfo, Model
from modelzoo.export import export_keras
from modelzoo.fetch import DownloadError, resolve
from modelzoo.graph import GraphModel, load_model
from modelzoo.lucid_format import Metadata
from modelzoo.vision import InceptionV1, LucidModel
from modelzoo.shipped import SHIPPED, heldout, list_shipped, load_shipped



def load_any(source: str):
    """The model ``source`` names: a shipped model's name, ``"InceptionV1"`` (Lucid's graph,
    downloaded on first use) or a Lucid-format ``.pb`` path/URL. ValueError otherwise."""
    from pathlib import Path

    if source in SHIPPED:
        return load_shipped(source)
    if source == "InceptionV1":
        return InceptionV1()
    if "://" in source or Path(source).is_file():
        return load_model(source)
    raise ValueError(f"unknown model {source!r}: expected one of {sorted(SHIPPED)}, InceptionV1, or a .pb path/URL")


__all__ = [
    "DownloadError", "GraphModel", "InceptionV1", "KerasModel", "LayerInfo", "LucidModel", "Metadata",
    "Model", "SHIPPED", "export_keras", "heldout", "list_shipped", "load_any", "load_model", "load_shipped", "resolve",
]
