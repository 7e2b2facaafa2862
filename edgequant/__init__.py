"""edgequant: trained Keras/TensorFlow model in, small, fast, verified .tflite artifacts out."""

__version__ = "0.1.0"
