"""What a new user meets in the first hour: one-line errors for a mistyped command line, a quick
``--help`` that imports no torch, no run dir left by a refused start, and a torch/torchvision
mismatch named in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from liver_gan.cli import scripts
from liver_gan.cli.torch_versions import check_torch_pair, matching_torchvision
from liver_gan.cli.vtt import UPSCALING
from liver_gan.errors import LiverGanError
from liver_gan.vtt.page import Upscaling


def run_tool(tool, args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run a console script in this process with ``args``; its exit status."""
    monkeypatch.setattr(sys, "argv", [tool.__name__, *args])
    try:
        tool()
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


@pytest.mark.parametrize(
    ("override", "named", "suggested"),
    [
        ("trainer.max_stpes=3", "trainer.max_stpes", "did you mean trainer.max_steps"),
        ("dataset=litz", "dataset=litz", "did you mean lits?"),
        ("dataset.subset=tumour", "dataset.subset=tumour", "did you mean tumor?"),
    ],
)
def test_a_mistyped_override_is_one_line_naming_the_key_and_the_closest_name_with_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], override: str, named: str, suggested: str
) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert run_tool(scripts.train, [override, "--cfg", "job"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"liver-gan: error: {named}")
    assert suggested in err
    assert "HYDRA_FULL_ERROR" not in os.environ  # set only while Hydra composes


def test_hydra_full_error_keeps_hydras_own_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra.errors import MissingConfigException

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(MissingConfigException):
        run_tool(scripts.train, ["dataset=litz", "--cfg", "job"], monkeypatch)


def test_help_imports_no_torch() -> None:
    """Every Hydra tool's --help (and the argparse tools'), one after another in a fresh interpreter:
    none imports torch or a Hydra tool's task."""
    tools = ["train", "prepare", "sample", "evaluate", "utility", "insert", "summary", "cache", "vtt"]
    code = (
        "import sys\n"
        "from liver_gan.cli import scripts\n"
        f"for tool in {tools!r}:\n"
        "    sys.argv = [tool, '--help']\n"
        "    try:\n        getattr(scripts, tool)()\n    except SystemExit:\n        pass\n"
        "print(sorted(name for name in sys.modules if name == 'torch' or name.startswith('liver_gan.cli.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert "liver-gan-sample: " in result.stdout and "liver-gan-utility: " in result.stdout
    assert "usage: liver-gan-cache" in result.stdout and "usage: liver-gan-vtt" in result.stdout
    imported = result.stdout.strip().splitlines()[-1]
    light = ["liver_gan.cli.cache", "liver_gan.cli.hydra_errors", "liver_gan.cli.scripts", "liver_gan.cli.summary",
             "liver_gan.cli.torch_versions", "liver_gan.cli.vtt"]
    assert imported == str(light)


def test_vtt_parser_offers_every_upscaling_the_page_knows() -> None:
    """liver-gan-vtt's parser names the upscaling modes itself, to import no torch; they must stay the page's."""
    assert UPSCALING == tuple(mode.value for mode in Upscaling)


def test_a_single_run_refused_at_start_leaves_no_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_tool(scripts.train, ["dataset=lits"], monkeypatch) == 2
    assert "dataset.root is not set" in capsys.readouterr().err
    assert list((tmp_path / "outputs" / "train").iterdir()) == []


def test_a_refused_start_keeps_a_run_dir_the_user_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_tool(scripts.train, ["dataset=lits", "hydra.run.dir=mine"], monkeypatch) == 2
    assert (tmp_path / "mine" / "train.log").is_file()


def test_torchvision_pairs_follow_torch_minor_plus_15() -> None:
    assert matching_torchvision("2.14.1") == "0.29"
    assert matching_torchvision("2.3.0+cpu") == "0.18"
    check_torch_pair("2.14.1", "0.29.1")
    check_torch_pair("2.13.0+cpu", "0.28.0+cpu")
    with pytest.raises(LiverGanError, match=r"torch 2.13.0 needs torchvision 0.28.x, but torchvision 0.29.1"):
        check_torch_pair("2.13.0", "0.29.1")


def test_a_mismatched_torchvision_fails_help_in_one_line(tmp_path: Path) -> None:
    """A fake torchvision 0.1 distribution ahead on the path: liver-gan-train --help refuses it."""
    site = tmp_path / "site"
    info = site / "torchvision-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.1.0\n")
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    code = "import sys\nfrom liver_gan.cli import scripts\nsys.argv = ['liver-gan-train', '--help']\nscripts.train()\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "torchvision 0.1.0 is installed" in result.stderr


REAL_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-ct" / "totalsegmentator"


@pytest.mark.parametrize("tool", ["prepare", "train"])
def test_every_tool_defaults_to_the_same_subset(compose_config, tool: str) -> None:
    assert compose_config([], config_name=tool, hydra=False).dataset.subset.value == "all"


def test_prepare_on_the_real_healthy_ct_exports_what_it_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The TotalSegmentator scan has no tumor: prepare's default must keep its liver slices, as training does."""
    if not REAL_CT.is_dir():
        pytest.skip(f"no {REAL_CT}")
    root = tmp_path / "ct"
    shutil.copytree(REAL_CT, root)
    run = tmp_path / "run"
    args = ["dataset=lits", f"dataset.root={root}", f"dataset.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"]
    assert run_tool(scripts.prepare, [*args, "export=imagefolder", "dataset.num_workers=1"], monkeypatch) == 0
    counts = json.loads((run / "dataset_summary.json").read_text())["counts"]
    assert counts["train"]["healthy"] > 0
    for split in ("train", "val"):
        for name in ("healthy", "tumor"):
            assert len(list((run / "imagefolder" / split / name).glob("*.png"))) == counts[split][name]
    assert f"train/healthy {counts['train']['healthy']}," in capsys.readouterr().out
