"""Train-time alignment (S-GRec): the offline personalized semantic judge and, later, policy post-training."""
