"""Compression: int8 quantization of the ONNX graph, structural pruning, and knowledge distillation.

Each result is a normal run artefact: ``model.int8.onnx`` beside ``model.onnx`` (served with
``--backend onnx-int8``), or a new run folder whose recipe records the smaller layer sizes. Every variant is
measured the same way (``danlu.compress.measure``) and put in one before/after table.
"""
