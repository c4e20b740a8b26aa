"""The embedded default dataset: synthetic contrast-enhanced abdominal CT as LiTS-format NIfTI.

LiTS cannot be downloaded without registering, so ``dataset=phantom`` first writes a few
portal-venous abdominal CT volumes (``volume-N.nii.gz``, Hounsfield units) with their
segmentations (``segmentation-N.nii.gz``, uint8: 0 background, 1 liver, 2 tumor), then reads
them back through the same reader as real data.

Anatomy is drawn in millimetres in RAS+ world coordinates: +x towards the patient's right,
+y anterior, +z superior, so the liver lies at +x. Cranio-caudal positions of organs are
fractions ``u`` of the scanned range (0 at the lowest slice, 1 at the highest), so that any
slice count keeps slices below the liver (kidneys, bowel, pelvis) and above its dome (lungs,
heart). Volumes are stored the way real files come: some LPS, some with reversed slice
order, some as unsigned integers with ``scl_inter = -1024``.

The layers, each a module: ``geometry`` (the grid, outlines, smooth random fields), ``body``
(the trunk and its bones), ``organs`` (around the liver), ``liver`` (the liver and its lesions),
``acquisition`` (the scanner's blur and noise), ``scan`` (one patient, drawn in order) and
``storage`` (the folder of NIfTI files, written once).
"""

from __future__ import annotations

from liver_gan.data.phantom.scan import Scan, synthesize_scan
from liver_gan.data.phantom.storage import GENERATOR_VERSION, phantom_key, write_phantom

__all__ = ["GENERATOR_VERSION", "Scan", "phantom_key", "synthesize_scan", "write_phantom"]
