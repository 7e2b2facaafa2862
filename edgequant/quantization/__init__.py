"""Turning the source model into .tflite variants, and the analyses that choose how."""
