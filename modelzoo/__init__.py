"""modelzoo: Lucid-format frozen graphs in TF2, InceptionV1 metadata, Keras adapter, shipped models."""

from lucid_ifv.model import KerasModel, LayerInfo, Model
from modelzoo.export import export_keras
from modelzoo.fetch import DownloadError, resolve
from modelzoo.graph import GraphModel, load_model
from modelzoo.lucid_format import Metadata
from modelzoo.vision import InceptionV1, LucidModel
from modelzoo.shipped import SHIPPED, heldout, list_shipped, load_shipped

__all__ = [
    "DownloadError", "GraphModel", "InceptionV1", "KerasModel", "LayerInfo", "LucidModel", "Metadata",
    "Model", "SHIPPED", "export_keras", "heldout", "list_shipped", "load_model", "load_shipped", "resolve",
]
