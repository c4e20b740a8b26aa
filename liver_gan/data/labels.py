"""Label values: the voxel labels of LiTS / MSD segmentations, and the class of a kept slice."""

from liver_gan.data.schema import Subset

# Voxel labels in a segmentation (LiTS and MSD Task03_Liver use the same three).
BACKGROUND_LABEL = 0
LIVER_LABEL = 1
TUMOR_LABEL = 2

# Class of a kept axial slice (thesis section 6.1.2): tumor if any voxel is TUMOR_LABEL.
HEALTHY = 0
TUMOR = 1
CLASS_NAMES = ("healthy", "tumor")

# Slice classes each value of ``dataset.subset`` keeps (``all`` keeps both, with their label).
SUBSET_CLASSES = {Subset.tumor: (TUMOR,), Subset.healthy: (HEALTHY,), Subset.all: (HEALTHY, TUMOR)}
