"""Data for calibration, evaluation and training: sources, preprocessing, checks, all streamed."""

from edgequant.data.stream import InputSpec, Sample, iter_batches, iter_samples

__all__ = ["InputSpec", "Sample", "iter_samples", "iter_batches"]
