"""Datasets: the on-disk format, dataset views, augmentation, importers and the embedded synthetic data."""
