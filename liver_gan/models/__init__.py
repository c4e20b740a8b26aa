"""Model families, one module each: the GANs (mlp.py, dcgan.py, stylegan2.py), the diffusion model
(ddpm.py) and the lesion inpainter (inpaint.py).

Their schemas are in schema.py and every family is built through registry.py, from registered
builders only; layers.py holds what the families' networks share.
"""
