"""TensorBoard logging of one training run, all in ``<run_dir>/tb``: scalars, image grids, the
resolved config as text and, at the end, the hyper-parameters with the final metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from liver_gan.training.checkpoint import plain_config


class TensorBoardLogger:
    """A thin wrapper around :class:`SummaryWriter`.

    ``purge_step`` is the first step a resumed run writes: events the interrupted run logged
    from that step on are dropped, so the curves continue without duplicates.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, grid: Tensor, step: int) -> None:
        self.writer.add_image(tag, grid, step)

    def config(self, cfg: DictConfig) -> None:
        # Indented by four spaces, the YAML renders as a code block in the TEXT tab.
        yaml = OmegaConf.to_yaml(cfg, resolve=True)
        self.writer.add_text("config", "".join(f"    {line}\n" for line in yaml.splitlines()))

    def hparams(self, cfg: DictConfig, metrics: Mapping[str, Any]) -> None:
        """The flattened config against the numeric final metrics, for the HPARAMS tab.

        ``run_name="."`` keeps them in this run's directory instead of a new timestamped one.
        """
        hparams = flatten_config(plain_config(cfg))
        numeric = {
            f"hparams/{name}": float(value)
            for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        self.writer.add_hparams(hparams, numeric, run_name=".")

    def flush(self) -> None:
        self.writer.flush()

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.writer.close()


def flatten_config(node: Any, prefix: str = "") -> dict[str, int | float | str | bool]:
    """``{"optimizer": {"lr": 2e-4}}`` -> ``{"optimizer.lr": 2e-4}``; lists and None become text."""
    if isinstance(node, dict):
        flat: dict[str, int | float | str | bool] = {}
        for key, value in node.items():
            flat.update(flatten_config(value, f"{prefix}{key}."))
        return flat
    value = node if isinstance(node, (int, float, str, bool)) else str(node)
    return {prefix.rstrip("."): value}
