"""TensorBoard logging of one training run, all in ``<run_dir>/tb/<run name>``: scalars, image grids,
the resolved config as text and, at the end, the hyper-parameters with the final metrics.

The events sit one folder below ``tb/`` so that ``tensorboard --logdir <run_dir>/tb`` names the run
after its run dir (events directly in the log dir would make a run named ".")."""

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

    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        self.log_dir = events_dir(run_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

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
        """The final metrics (``result.<key>``) and the flattened config, as the HPARAMS tab's columns.

        TensorBoard reads a session's metric values from scalar events, which would add a one-point
        chart per metric to the SCALARS tab; as hyper-parameters they stay in the HPARAMS table,
        sortable and filterable like the config.  ``run_name="."`` keeps them in this run's directory
        instead of a new timestamped one.
        """
        results = {
            f"result.{name}": value for name, value in metrics.items() if isinstance(value, (int, float, str))
        }
        self.writer.add_hparams({**results, **flatten_config(plain_config(cfg))}, {}, run_name=".")

    def flush(self) -> None:
        self.writer.flush()

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.writer.close()


def events_dir(run_dir: Path) -> Path:
    """``<run_dir>/tb/<run dir's name>``: where a run's events go."""
    run_dir = Path(run_dir).resolve()
    return run_dir / "tb" / run_dir.name


def flatten_config(node: Any, prefix: str = "") -> dict[str, int | float | str | bool]:
    """``{"optimizer": {"lr": 2e-4}}`` -> ``{"optimizer.lr": 2e-4}``; lists and None become text."""
    if isinstance(node, dict):
        flat: dict[str, int | float | str | bool] = {}
        for key, value in node.items():
            flat.update(flatten_config(value, f"{prefix}{key}."))
        return flat
    value = node if isinstance(node, (int, float, str, bool)) else str(node)
    return {prefix.rstrip("."): value}


class SilentBoard(TensorBoardLogger):
    """The logger of the ranks other than 0 in a run of several: it writes nothing (rank 0 logs the run)."""

    def __init__(self) -> None:
        pass

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        pass

    def image(self, tag: str, grid: Tensor, step: int) -> None:
        pass

    def config(self, cfg: DictConfig) -> None:
        pass

    def hparams(self, cfg: DictConfig, metrics: Mapping[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def __exit__(self, *exc_info: object) -> None:
        pass
