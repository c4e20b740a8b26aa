"""Downstream tasks: does synthetic data help a task trained and tested on real patients?

Today a healthy-vs-tumor classifier (``classification``), trained in the arms of ``arms`` and
reported by ``report``; a segmentation task will join it."""
