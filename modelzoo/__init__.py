"""modelzoo: Lucid-format frozen graphs in TF2, InceptionV1 metadata, Keras adapter, shipped models."""
