"""The generative model: SID vocabulary, transformer, training, ONNX export, model artifacts."""
