"""liver-gan: Hydra-configured GAN experiments for synthetic liver CT slices."""

__version__ = "0.1.0"
