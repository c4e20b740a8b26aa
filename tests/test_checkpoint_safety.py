"""Opening a checkpoint never runs anything (issue 11): crafted tensor-only checkpoints whose saved
config would run code when instantiated go through every loader (liver-gan-sample, -eval, -vtt,
-utility and a training resume); each refuses with one line naming the file and the offending
key, and the marker file the payload would create never appears."""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError
from tiny_gan import save_tiny_checkpoint, tiny_phantom_overrides

from liver_gan.cli.evaluate import main as eval_main
from liver_gan.cli.sample import main as sample_main
from liver_gan.cli.train import main as train_main
from liver_gan.cli.utility import main as utility_main
from liver_gan.cli.vtt import main as vtt_main
from liver_gan.errors import LiverGanError
from liver_gan.training.checkpoint import load_checkpoint

DCGAN = ["model=dcgan", "model.generator_channels=4", "model.discriminator_channels=4", "model.latent_dim=8"]


class CreateFile:
    """Unpickling this opens ``path`` for writing: the file appearing means the pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return open, (str(self.path), "w")


def nested_chain(marker: Path) -> dict[str, Any]:
    """torch.load(io.BytesIO(<a pickle>), weights_only=False), nested in a model option."""
    return {
        "_target_": "torch.load",
        "f": {"_target_": "io.BytesIO", "initial_bytes": pickle.dumps(CreateFile(marker))},
        "weights_only": False,
    }


def with_nested_chain(config: dict[str, Any], marker: Path) -> str:
    config["model"]["generator_channels"] = nested_chain(marker)
    return "model.generator_channels._target_"


def with_os_system(config: dict[str, Any], marker: Path) -> str:
    config["model"] = {"_target_": "os.system", "command": f"touch {marker}"}
    return "model._target_"


def tiny_dcgan(data_dir: Path) -> list[str]:
    """The tiny phantom in ``data_dir``, with a tiny DCGAN instead of the tiny MLP."""
    return [override for override in tiny_phantom_overrides(data_dir) if not override.startswith("model")] + DCGAN


@pytest.fixture(scope="module")
def tiny_dcgan_run(compose_config: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("run")
    return save_tiny_checkpoint(compose_config, tmp_path / "train", tiny_dcgan(tmp_path))


def crafted_checkpoint(run_dir: Path, folder: Path, craft: Callable[[dict[str, Any], Path], str]) -> tuple[Path, Path, str]:
    """A tensor-only copy of the run's checkpoint whose config carries the payload, and whose data
    would be built in ``folder``; (file, marker, key)."""
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    state["config"]["dataset"].update(root=str(folder / "phantom"), cache_dir=str(folder / "cache"))
    marker = folder / "marker"
    key = craft(state["config"], marker)
    state.update(train_seconds=1.0, log_window={"sums": torch.zeros(4), "count": 0})
    path = folder / "crafted.pt"
    torch.save(state, path)
    torch.load(path, weights_only=True)  # tensor-only: weights_only alone does not stop it
    return path, marker, key


def open_with_liver_gan_sample(checkpoint: Path, work: Path) -> None:
    sys.argv = ["liver-gan-sample", f"checkpoint={checkpoint}", f"hydra.run.dir={work / 'out'}", "device=cpu"]
    sample_main()


def open_with_liver_gan_eval(checkpoint: Path, work: Path) -> None:
    sys.argv = ["liver-gan-eval", f"checkpoint={checkpoint}", f"hydra.run.dir={work / 'out'}", "device=cpu"]
    eval_main()


def open_with_liver_gan_utility(checkpoint: Path, work: Path) -> None:
    sys.argv = ["liver-gan-utility", f"generator={checkpoint}", f"hydra.run.dir={work / 'out'}", "device=cpu"]
    utility_main()


def open_with_liver_gan_vtt(checkpoint: Path, work: Path) -> None:
    vtt_main(["make", "--generator", str(checkpoint), "--out", str(work / "out"), "--device", "cpu"])


def open_with_a_training_resume(checkpoint: Path, work: Path) -> None:
    sys.argv = [
        "liver-gan-train",
        *tiny_dcgan(work),
        f"trainer.resume={checkpoint}",
        "trainer.device=cpu",
        "eval.enabled=false",
        f"hydra.run.dir={work / 'resumed'}",
    ]
    train_main()


LOADERS = [
    open_with_liver_gan_sample,
    open_with_liver_gan_eval,
    open_with_liver_gan_utility,
    open_with_liver_gan_vtt,
    open_with_a_training_resume,
]


@pytest.mark.parametrize("craft", [with_nested_chain, with_os_system])
@pytest.mark.parametrize("open_checkpoint", LOADERS)
def test_every_loader_refuses_a_config_that_would_run_code(
    tiny_dcgan_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    craft: Callable[[dict[str, Any], Path], str],
    open_checkpoint: Callable[[Path, Path], None],
) -> None:
    checkpoint, marker, key = crafted_checkpoint(tiny_dcgan_run, tmp_path, craft)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as exit_info:
        open_checkpoint(checkpoint, tmp_path)
    error = capsys.readouterr().err
    assert not marker.exists()
    assert exit_info.value.code == 2
    assert error.startswith("liver-gan: error: ") and error.count("\n") == 1
    assert str(checkpoint) in error and key in error
    assert not (tmp_path / "phantom").exists() and not (tmp_path / "cache").exists()  # before any dataset build


def test_the_untouched_checkpoint_still_opens(tiny_dcgan_run: Path) -> None:
    """The control: what the crafted files are made from is accepted."""
    state = load_checkpoint(tiny_dcgan_run / "checkpoints" / "last.pt")
    assert state["config"]["model"]["generator_channels"] == 4


def set_key(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for parent in parents:
        config = config[parent]
    config[last] = value


@pytest.mark.parametrize(
    "dotted, value, named",
    [
        ("optimizer._target_", "os.system", "optimizer._target_"),
        ("optimizer._target_", "torch.optim.adam.torch.load", "optimizer._target_"),
        ("model._target_", "liver_gan.models.dcgan.torch.load", "model._target_"),
        ("_target_", "os.system", "_target_"),
        ("dataset.window._target_", "os.system", "dataset.window._target_"),
        ("augment._target_", "os.system", "augment._target_"),
        ("model._args_", ["touch"], "model._args_"),
        ("dataset.root", "${oc.env:HOME}", "dataset.root"),
        ("dataset.resolution", "abc", "dataset.resolution"),
        ("trainer.launch", "now", "trainer.launch"),
    ],
)
def test_a_saved_config_outside_the_schema_or_allow_list_is_refused(
    tiny_dcgan_run: Path, tmp_path: Path, dotted: str, value: Any, named: str
) -> None:
    state = torch.load(tiny_dcgan_run / "checkpoints" / "last.pt", weights_only=True)
    set_key(state["config"], dotted, value)
    path = tmp_path / "crafted.pt"
    torch.save(state, path)
    with pytest.raises(LiverGanError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message and named in message


def test_a_target_inside_a_list_is_found(tiny_dcgan_run: Path, tmp_path: Path) -> None:
    state = torch.load(tiny_dcgan_run / "checkpoints" / "last.pt", weights_only=True)
    state["config"]["optimizer"]["betas"] = [{"_target_": "os.system", "command": "true"}, 0.999]
    torch.save(state, tmp_path / "crafted.pt")
    with pytest.raises(LiverGanError, match=r"optimizer\.betas\.0\._target_"):
        load_checkpoint(tmp_path / "crafted.pt")


def test_the_saved_config_is_typed_by_the_schema(tiny_dcgan_run: Path) -> None:
    """Validated, not just parsed: enum fields come back as enums and the model as its family's schema."""
    cfg = load_checkpoint(tiny_dcgan_run / "checkpoints" / "last.pt")["config"]
    assert OmegaConf.get_type(cfg.model).__name__ == "DCGANConfig"
    with pytest.raises(ValidationError):
        cfg.model.generator_channels = "many"
