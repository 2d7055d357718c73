"""Item text -> embeddings -> Semantic IDs: text encoder, RQ-VAE quantizer, SID assignment, codebook artifacts, collaborative signal."""
