"""The cost of the memory check before every model build (liver_gan/models/memory.py, issue 24).

Every tool counts a model's weights on the meta device before building it; this prints, for each
model preset at its default resolution (and two oversized configs), the estimate, the seconds it
took and the seconds of the real build it guards.  The goal is under 0.5 s per estimate.  Each
family's first build pays its imports (MONAI for ddpm and inpaint); they are counted once, in a
warm-up build, so that the estimate is timed as it runs in a tool, where the real build follows.
"""

from __future__ import annotations

import time

from hydra import compose, initialize_config_dir

from liver_gan.cli import CONFIG_DIR
from liver_gan.config import register_configs
from liver_gan.memory import format_bytes
from liver_gan.models.memory import weight_bytes
from liver_gan.models.registry import _call_builder

PRESETS = [["model=mlp"], ["model=dcgan_small"], ["model=dcgan"], ["model=stylegan2"], ["model=ddpm"], ["model=inpaint"]]
OVERSIZED = [["model=mlp", "model.generator_widths=[1099511627776]"], ["model=dcgan", "dataset.resolution=65536"], ["model=mlp", "dataset.resolution=100000"]]


def main() -> None:
    register_configs()
    print(f"{'config':58} {'weights':>12} {'estimate s':>11} {'build s':>8}")
    for overrides in PRESETS + OVERSIZED:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        weight_bytes(lambda: _call_builder(cfg))  # warm-up: imports, as the tool's own build needs them too
        start = time.perf_counter()
        estimate = weight_bytes(lambda: _call_builder(cfg))
        estimate_s = time.perf_counter() - start
        build_s = "-"
        if overrides in PRESETS:
            start = time.perf_counter()
            _call_builder(cfg)
            build_s = f"{time.perf_counter() - start:.3f}"
        print(f"{' '.join(overrides):58} {format_bytes(estimate):>12} {estimate_s:>11.3f} {build_s:>8}")


if __name__ == "__main__":
    main()
