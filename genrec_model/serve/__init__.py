"""Post-processing of decoded lists: seen-item filtering, fusion priors, popularity fill, diversity."""
