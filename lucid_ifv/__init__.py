"""lucid-ifv: Lucid-style feature visualization and its inversion (Grad-IFV) in TensorFlow 2."""

__version__ = "0.1.0"
