"""Image-quality metrics of generated slices (FID and KID with pytorch-fid's Inception, and more)."""
