"""Downstream tasks: does synthetic data help a task trained and tested on real patients?

A healthy-vs-tumor classifier (``classification``) or a liver and tumor U-Net (``segmentation``,
for slices with masks), trained in the arms of ``arms`` and reported by ``report``."""
