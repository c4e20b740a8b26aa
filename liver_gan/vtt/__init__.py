"""A visual Turing test: a static page of shuffled real and synthetic slices, and its scoring."""
