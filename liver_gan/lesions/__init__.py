"""Lesion painting: the one home for drawing liver tumors, used by the phantom and by
``liver-gan-insert`` on real volumes.

``shape`` draws a lesion's 3-D mask as a depth field (lobulated, elastically deformed
ellipsoids), ``shading`` turns depth into HU (soft edge, rim, necrotic core), ``placement``
finds where a lesion may go (inside the liver with a margin, away from vessels and tumors),
``mass_effect`` pushes the surrounding liver outward, ``procedural`` paints one patient,
``fit`` estimates the options from labelled tumors and ``insert`` runs the tool over a dataset.
"""
