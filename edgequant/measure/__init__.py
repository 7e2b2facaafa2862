"""Measuring .tflite models: evaluation against float32, comparison of two models, gates, the ONNX parity check."""
