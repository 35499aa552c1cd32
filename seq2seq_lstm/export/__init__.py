"""Trained runs outside PyTorch: ONNX export (``exporter``) and the ONNX Runtime engine (``engine``).

The interface of the exported graphs and the manifest is documented in docs/export.md. Nothing here
imports onnx or onnxruntime at import time: they are the optional ``export`` extra.
"""
