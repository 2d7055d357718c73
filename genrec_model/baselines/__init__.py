"""Reference models evaluated with the same code: SASRec-CE (most-popular lives in serve.popularity)."""
