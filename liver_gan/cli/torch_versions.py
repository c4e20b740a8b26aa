"""Which torch and torchvision releases go together, checked from their installed metadata.

Since torch 2.0 every torch 2.N release has one torchvision, 0.(N + 15): torch 2.14 with
torchvision 0.29, 2.13 with 0.28, 2.3 with 0.18.  A mismatched pair installs without complaint and
then breaks at ``import torchvision`` (its compiled operators are built against one torch), so
every tool checks the pair before it starts, from ``importlib.metadata``: no torch import.
"""

from __future__ import annotations

from importlib import metadata

from packaging.version import InvalidVersion, Version

from liver_gan.errors import LiverGanError

# torchvision 0.(N + OFFSET) is built for torch 2.N
TORCHVISION_MINOR_OFFSET = 15


def matching_torchvision(torch_version: str) -> str:
    """The torchvision release line (``0.M``) built for ``torch_version`` (a 2.x release)."""
    torch = Version(torch_version)
    return f"0.{torch.minor + TORCHVISION_MINOR_OFFSET}"


def check_torch_pair(torch_version: str | None = None, torchvision_version: str | None = None) -> None:
    """Refuse an installed torchvision that was not built for the installed torch, in one line.

    Without arguments, the installed distributions' versions; a missing one is left for the import
    to report (pip names it), and a version that does not parse is not ours to judge.
    """
    try:
        torch_version = torch_version or metadata.version("torch")
        torchvision_version = torchvision_version or metadata.version("torchvision")
        torch, torchvision = Version(torch_version), Version(torchvision_version)
    except (metadata.PackageNotFoundError, InvalidVersion):
        return
    if torch.major != 2:
        return
    expected = matching_torchvision(torch_version)
    if f"{torchvision.major}.{torchvision.minor}" != expected:
        raise LiverGanError(
            f"torch {torch_version} needs torchvision {expected}.x, but torchvision {torchvision_version} is "
            f"installed: pip install 'torchvision=={expected}.*' (or the torch that torchvision {torchvision_version} "
            f"was built for, 2.{torchvision.minor - TORCHVISION_MINOR_OFFSET})"
        )
