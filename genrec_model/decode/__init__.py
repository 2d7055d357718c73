"""Decoding: packed trie, constraints, beam search, onnxruntime step models (no torch)."""
