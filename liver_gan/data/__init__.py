"""The slice dataset: LiTS / MSD NIfTI pairs read as Hounsfield units, cut into liver slices,
cached by a key over every preprocessing option and input file, and split by patient."""
