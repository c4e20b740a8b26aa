"""Downstream utility: does synthetic data help a healthy-vs-tumor classifier on real patients?"""
