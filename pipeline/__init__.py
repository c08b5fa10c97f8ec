"""Honest transfer-learning comparison on augmented medical image archives."""
