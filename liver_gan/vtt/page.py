"""Write a visual Turing test: one self-contained HTML page plus a separate answer key.

The page embeds every slice as a base64 PNG data URI at its native resolution and lets the browser
scale it to ``display_size`` pixels (nearest neighbour or smooth), so it opens offline, from a
USB stick or an e-mail attachment, with no server. Real and synthetic slices go through the same
8-bit quantisation and PNG encoder, in a seeded random order, under neutral ids (``slice-001``...),
so nothing in the page source tells them apart.

The truth lives only in ``key.json``: one bit per slice (1 = synthetic), XOR-ed with a random salt
and base64-encoded. That is obfuscation, not encryption: it keeps the answers from being read at a
glance, so give the key file to nobody who takes the test.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path

from torch import Tensor

from liver_gan.atomic import atomic_write_json, atomic_write_text
from liver_gan.errors import LiverGanError
from liver_gan.images import png_data_uri

KEY_FORMAT = "liver-gan-vtt-key/1"
PAGE_FILE = "vtt.html"
KEY_FILE = "key.json"
DATA_PLACEHOLDER = "__VTT_DATA__"


class Upscaling(str, Enum):
    nearest = "nearest"  # every pixel a sharp square: hides nothing the generator did
    smooth = "smooth"  # the browser's bilinear-like filter, as a PACS viewer shows a zoomed slice


CSS_RENDERING = {Upscaling.nearest: "pixelated", Upscaling.smooth: "auto"}


@dataclass(frozen=True)
class VisualTuringTest:
    page: Path
    key: Path
    num_real: int
    num_fake: int


def encode_truth(is_fake: list[bool]) -> tuple[str, str]:
    """(salt, encoded): one random byte per slice, and the truth bits XOR-ed with it, base64."""
    salt = secrets.token_bytes(len(is_fake))
    encoded = bytes(int(fake) ^ byte for fake, byte in zip(is_fake, salt))
    return base64.b64encode(salt).decode("ascii"), base64.b64encode(encoded).decode("ascii")


def decode_truth(salt: str, encoded: str) -> list[bool]:
    """Inverse of :func:`encode_truth`: True where the slice is synthetic."""
    salt_bytes, encoded_bytes = base64.b64decode(salt), base64.b64decode(encoded)
    if len(salt_bytes) != len(encoded_bytes):
        raise LiverGanError("the VTT key is corrupt (salt and truth differ in length); use the key.json written with the page")
    return [bool((byte ^ mask) & 1) for byte, mask in zip(encoded_bytes, salt_bytes)]


def render_page(test_id: str, uris: list[str], ids: list[str], display_size: int, upscaling: Upscaling) -> str:
    data = {
        "test_id": test_id,
        "display_size": display_size,
        "image_rendering": CSS_RENDERING[upscaling],
        "images": [{"id": image_id, "src": uri} for image_id, uri in zip(ids, uris)],
    }
    # "</" would end the <script> element early; JSON allows the escaped form.
    payload = json.dumps(data).replace("</", "<\\/")
    template = resources.files("liver_gan.vtt").joinpath("template.html").read_text(encoding="utf-8")
    return template.replace(DATA_PLACEHOLDER, payload)


def write_visual_turing_test(
    real: Tensor,
    fake: Tensor,
    out_dir: Path,
    seed: int,
    display_size: int = 512,
    upscaling: Upscaling = Upscaling.nearest,
    sources: dict[str, str] | None = None,
) -> VisualTuringTest:
    """Shuffle uint8 (N, 1, H, W) ``real`` and ``fake`` slices into ``out_dir/vtt.html`` and ``key.json``."""
    if real.shape[1:] != fake.shape[1:]:
        raise LiverGanError(
            f"real slices {tuple(real.shape[1:])} and synthetic ones {tuple(fake.shape[1:])} differ in size, "
            "which would give the answer away; give slices of one resolution"
        )
    if len(real) == 0 or len(fake) == 0:
        raise LiverGanError("a visual Turing test needs at least one real and one synthetic slice")
    if display_size < 1:
        raise LiverGanError(f"--size={display_size} must be a positive number of pixels")
    slices = [(image, False) for image in real] + [(image, True) for image in fake]
    random.Random(seed).shuffle(slices)
    ids = [f"slice-{index:03d}" for index in range(1, len(slices) + 1)]
    test_id = secrets.token_hex(8)
    salt, encoded = encode_truth([is_fake for _, is_fake in slices])
    out_dir = Path(out_dir)
    page = out_dir / PAGE_FILE
    key = out_dir / KEY_FILE
    atomic_write_text(page, render_page(test_id, [png_data_uri(image[0]) for image, _ in slices], ids, display_size, upscaling))
    atomic_write_json(
        key,
        {
            "format": KEY_FORMAT,
            "test_id": test_id,
            "ids": ids,
            "salt": salt,
            "encoded_truth": encoded,
            "num_real": len(real),
            "num_fake": len(fake),
            "sources": sources or {},
        },
    )
    return VisualTuringTest(page=page, key=key, num_real=len(real), num_fake=len(fake))
