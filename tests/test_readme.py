"""The README's set-up commands are what users and CI run, and its statements about the code are
what the code does: keep them true."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from liver_gan.cli import scripts
from liver_gan.cli.torch_versions import check_torch_pair
from liver_gan.config import EvalConfig
from liver_gan.metrics.evaluate import AUTO_MAX_SAMPLES, generated_count
from liver_gan.training.loop import write_samples
from liver_gan.training.state import FixedSamples

REPO_ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    assert first_block, "README.md must open with a code block of set-up commands"
    return [line.strip() for line in first_block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_exactly_two_setup_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert "liver-gan-train" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert _readme_commands()[1] in ci_lines


def _readme() -> str:
    return (REPO_ROOT / "README.md").read_text()


def _table_row(first_cell: str, page: str = "README.md") -> list[str]:
    """The cells of the table row of ``page`` (README.md or docs/*.md) whose first cell is ``first_cell``."""
    for line in (REPO_ROOT / page).read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"{page} has no table row for {first_cell}")


@pytest.mark.parametrize(
    "group", ["dataset", "model", "optimizer", "loss", "augment", "eval", "trainer", "experiment", "debug", "hparams_search"]
)
def test_the_group_table_lists_every_option_of_its_group(group: str) -> None:
    listed = set(re.findall(r"`(\w+)`", _table_row(f"`{group}`")[1]))
    assert listed == {path.stem for path in (REPO_ROOT / "conf" / group).glob("*.yaml")}


def test_eval_num_samples_default_is_what_the_code_generates() -> None:
    default = _table_row("`eval.num_samples`", "docs/evaluation.md")[1]
    assert default == f"null: twice the reals, at most {AUTO_MAX_SAMPLES}" and EvalConfig.num_samples is None
    assert (generated_count(None, 100), generated_count(None, AUTO_MAX_SAMPLES)) == (200, AUTO_MAX_SAMPLES)


def test_sample_grids_are_named_by_epoch_at_an_epochs_end_and_by_step_otherwise(tmp_path: Path) -> None:
    class Board:
        def image(self, *args: object) -> None:
            pass

    class Generator(nn.Module):
        def forward(self, noise: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
            return torch.tanh(noise.repeat(1, 16)).view(-1, 1, 8, 8)

    generator = Generator()
    fixed = FixedSamples(torch.zeros(2, 4), None, columns=2)
    for step in (10, 7):
        write_samples(Board(), generator, fixed, step=step, steps_per_epoch=5, run_dir=tmp_path)
    written = sorted(path.name for path in (tmp_path / "samples").iterdir())
    assert written == ["epoch_0002.png", "step_0000007.png"]
    readme = _readme()
    for name in written:
        pattern = re.sub(r"\d", "X", name)
        assert f"samples/{pattern}" in readme, pattern


def test_the_torch_pairs_listed_are_pairs_and_include_the_oldest_supported() -> None:
    rows = re.findall(r"^\| (2\.\d+)[^|]* \| (0\.\d+) \|$", _readme(), re.M)
    assert len(rows) >= 3, rows
    for torch_version, torchvision_version in rows:
        check_torch_pair(torch_version, torchvision_version)
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    oldest = (re.search(r'"torch>=([\d.]+)"', pyproject)[1], re.search(r'"torchvision>=([\d.]+)"', pyproject)[1])
    assert oldest in rows


def test_the_readmes_one_line_hydra_error_is_what_the_tool_prints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = re.search(r"`(liver-gan: error: dataset=litz: [^`]*)`", _readme())
    assert shown, "README.md shows the one-line error of dataset=litz"
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["liver-gan-train", "dataset=litz", "--cfg", "job"])
    with pytest.raises(SystemExit) as exit_info:
        scripts.train()
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip() == shown[1]
