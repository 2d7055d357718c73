"""Reference models evaluated with the same code: SASRec-CE, content-knn (most-popular lives in serve.popularity)."""
