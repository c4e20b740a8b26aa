"""A run dir is as untrusted as a shared checkpoint (issue 24, item 1): the overrides recorded in its
``.hydra/overrides.yaml`` are replayed only when they are schema keys or config groups of the run."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import yaml
from test_run_dir import TINY_TRAINER

from liver_gan.cli.train import main as train_main
from liver_gan.errors import LiverGanError
from liver_gan.runs import saved_overrides


def checksums(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, with the SHA-256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def write_record(run_dir: Path, overrides: list[str]) -> None:
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))


def test_resume_refuses_a_hydra_callback_appended_to_the_saved_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The repro: a callback in the saved overrides wrote a .pth file that the next Python start runs."""
    run_dir, planted = tmp_path / "run", tmp_path / "zz.pth"
    write_record(
        run_dir,
        [
            "trainer.device=cpu",
            "trainer.epochs=0",
            "+hydra.callbacks.x._target_=liver_gan.atomic.atomic_write_text",
            f"+hydra.callbacks.x._args_=[{planted},'import os; os.system(\"touch CANARY\")']",
        ],
    )
    before = checksums(run_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["liver-gan-train", f"hydra.run.dir={run_dir}", "trainer.resume=auto"])
    with pytest.raises(SystemExit) as exit_info:
        train_main()
    assert exit_info.value.code == 2
    assert not planted.exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "+hydra.callbacks.x._target_" in err and str(run_dir / ".hydra" / "overrides.yaml") in err
    assert checksums(run_dir) == before


@pytest.mark.parametrize(
    "override",
    [
        "hydra.job.chdir=true",
        "hydra/launcher=joblib",
        "+trainer.extra=1",
        "++trainer.epochs=1",
        "~trainer.max_steps",
        "trainer.epochs=${oc.env:HOME}",
        "dataset.cache_dir=${unique_run_dir:/tmp/victim,x}",
        "model._target_=os.system",
        "optimizer._target_=builtins.exec",
        "augment._target_=subprocess.call",
        "eval.segmenter._target_=os.system",
        "nonsense.key=1",
        "noequals",
    ],
)
def test_saved_overrides_refuses_what_a_user_would_not_have_typed(tmp_path: Path, override: str) -> None:
    write_record(tmp_path, ["model=mlp", override])
    with pytest.raises(LiverGanError, match="refusing to replay"):
        saved_overrides(tmp_path)


def test_saved_overrides_keeps_group_choices_and_schema_keys(tmp_path: Path) -> None:
    kept = [
        "model=dcgan",
        "experiment=thesis",
        "trainer.epochs=3",
        "model.generator_channels=8",
        "optimizer._target_=torch.optim.SGD",
        "model._target_=liver_gan.models.mlp.build_mlp_gan",
        "dataset.root=/data/lits",
    ]
    write_record(tmp_path, kept)
    assert saved_overrides(tmp_path) == kept


@pytest.mark.parametrize("text", ["{a: 1}", "[1, 2]", "- [unclosed", "\x00\x01binary"])
def test_saved_overrides_refuses_a_record_that_is_no_list_of_overrides(tmp_path: Path, text: str) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(text)
    with pytest.raises(LiverGanError, match="overrides.yaml"):
        saved_overrides(tmp_path)


def test_a_run_dir_without_a_record_has_no_saved_overrides(tmp_path: Path) -> None:
    assert saved_overrides(tmp_path) == []


def run_train(monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["liver-gan-train", *argv])
    train_main()


def test_a_cross_run_resume_refuses_a_run_dir_holding_its_own_run(
    tiny_phantom: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The repro of item 3: resuming B's checkpoint in A replaced A's checkpoints, .hydra/ and metrics.json."""
    tiny = [*tiny_phantom, *TINY_TRAINER]
    run_a, run_b = tmp_path / "A", tmp_path / "B"
    run_train(monkeypatch, *tiny, f"hydra.run.dir={run_a}")
    run_train(monkeypatch, *tiny, "seed=1", f"hydra.run.dir={run_b}")
    before = {name: digest for name, digest in checksums(run_a).items() if name != "train.log"}
    assert "checkpoints/last.pt" in before
    capsys.readouterr()

    with pytest.raises(SystemExit) as exit_info:
        run_train(monkeypatch, *tiny, "seed=1", "trainer.max_steps=3",
                  f"trainer.resume={run_b / 'checkpoints' / 'last.pt'}", f"hydra.run.dir={run_a}")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a run of its own" in err
    assert {name: digest for name, digest in checksums(run_a).items() if name != "train.log"} == before

    run_c = tmp_path / "C"  # an empty run dir may continue B
    run_train(monkeypatch, *tiny, "seed=1", "trainer.max_steps=3",
              f"trainer.resume={run_b / 'checkpoints' / 'last.pt'}", f"hydra.run.dir={run_c}")
    assert (run_c / "checkpoints" / "last.pt").is_file()


def test_resume_auto_without_last_pt_offers_the_newest_epoch_file(
    tiny_phantom: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in ("epoch_0001.pt", "epoch_0002.pt"):
        (checkpoints / name).write_bytes(b"a checkpoint of the user's")
    before = checksums(run_dir)
    with pytest.raises(SystemExit) as exit_info:
        run_train(monkeypatch, *tiny_phantom, *TINY_TRAINER, "trainer.resume=auto", f"hydra.run.dir={run_dir}")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith(f"trainer.resume={checkpoints / 'epoch_0002.pt'}")
    assert {name: digest for name, digest in checksums(run_dir).items() if not name.startswith(("train.log", ".hydra"))} == before
