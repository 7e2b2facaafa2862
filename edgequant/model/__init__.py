"""The models edgequant reads and runs: the source model (Keras, SavedModel, ONNX), .tflite files, their inputs, the LiteRT interpreter."""
