"""Every bad input of issue 24's traceback list ends as one line on stderr and exit status 2, and the
user's files are the same, byte for byte, after the refusal."""

from __future__ import annotations

import errno
import json
import logging
import shutil
import struct
import sys
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from test_hostile_run_dir import checksums
from test_run_dir import TINY_TRAINER
from tiny_gan import save_tiny_checkpoint, tiny_phantom_overrides

import liver_gan.atomic
import liver_gan.data.cache
import liver_gan.images
from liver_gan.cli import scripts
from liver_gan.cli.evaluate import main as evaluate_main
from liver_gan.cli.prepare import main as prepare_main
from liver_gan.cli.sample import main as sample_main
from liver_gan.cli.train import main as train_main
from liver_gan.cli.vtt import main as vtt_main
from liver_gan.errors import LiverGanError
from liver_gan.metrics.reference import reference_statistics
from liver_gan.sweeps.summary import collect_jobs, format_csv
from liver_gan.vtt.page import KEY_FORMAT

Setup = Callable[[Path, pytest.MonkeyPatch], tuple[Callable[[], Any], Path]]


@pytest.fixture(scope="module")
def trained_run(tiny_phantom: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A tiny run of two steps, copied by each resume case."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    overrides = [*tiny_phantom, *TINY_TRAINER]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["liver-gan-train", *overrides, f"hydra.run.dir={run_dir}"])
        train_main()
    return run_dir, overrides


@pytest.fixture
def tiny_run(compose_config: Callable[..., DictConfig], tmp_path: Path) -> Path:
    return save_tiny_checkpoint(compose_config, tmp_path / "train", tiny_phantom_overrides(tmp_path))


def user_files(tmp_path: Path) -> Path:
    """A folder of the user's beside the tool's run dir."""
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "mine.txt").write_text("the user's")
    return tmp_path / "user"


def argv_of(tool: str, *args: str) -> list[str]:
    return [tool, *args]


def edited_checkpoint(run: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def wrong_shape(state: dict[str, Any]) -> None:
    name = next(iter(state["generator"]))
    state["generator"][name] = torch.zeros(3, 3)


def not_a_dict(state: dict[str, Any]) -> None:
    state["generator"] = [1, 2, 3]


def nan_weights(state: dict[str, Any]) -> None:
    name = next(iter(state["generator"]))
    state["generator"][name] = torch.full_like(state["generator"][name], float("nan"))


def bomb_png(path: Path, width: int = 30000, height: int = 30000) -> None:
    """A PNG whose header claims width x height; its data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def raising(code: int) -> Callable[..., None]:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(code, f"simulated {errno.errorcode[code]}")

    return fail


CASES = ["weights_shape", "generator_not_a_dict", "nan_weights", "huge_widths", "huge_resolution", "resume_rng_garbage",
         "resume_negative_step", "read_only_out", "disk_full_export", "disk_full_checkpoint", "negative_seed",
         "nan_window_level", "disk_full_dataset_build", "non_image_png", "png_bomb", "vtt_list_answer", "vtt_int_ids"]


@pytest.mark.parametrize("case", CASES)
def test_each_bad_input_is_one_line_and_changes_nothing(
    case: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    main, argv, protected = _setup(case, request, tmp_path, monkeypatch)
    before = checksums(protected)
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("liver-gan: error: ") and "Traceback" not in err, err
    assert checksums(protected) == before


def _setup(
    case: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Callable[[], Any], list[str], Path]:
    sample = lambda run, *extra: (sample_main, argv_of("liver-gan-sample", f"checkpoint={run}", "num_samples=2",  # noqa: E731
                                                     "device=cpu", f"hydra.run.dir={tmp_path / 'sample_run'}", *extra))
    if case in ("weights_shape", "generator_not_a_dict", "nan_weights"):
        run = request.getfixturevalue("tiny_run")
        edited_checkpoint(run, {"weights_shape": wrong_shape, "generator_not_a_dict": not_a_dict, "nan_weights": nan_weights}[case])
        return (*sample(run, f"out={tmp_path / 'E'}"), run)
    if case in ("huge_widths", "huge_resolution"):
        huge = "model.generator_widths=[1099511627776]" if case == "huge_widths" else "dataset.resolution=100000"
        tiny = [*tiny_phantom_overrides(tmp_path), *TINY_TRAINER]
        return train_main, argv_of("liver-gan-train", *tiny, huge, f"hydra.run.dir={tmp_path / 'run'}"), user_files(tmp_path)
    if case.startswith(("resume_", "disk_full_checkpoint")):
        trained, overrides = request.getfixturevalue("trained_run")
        run = tmp_path / "run"
        shutil.copytree(trained, run)
        if case == "resume_rng_garbage":
            edited_checkpoint(run, lambda state: state.update(rng={"torch": "garbage", "batch_order": [1]}))
        elif case == "resume_negative_step":
            edited_checkpoint(run, lambda state: state.update(step=-5))
        else:
            monkeypatch.setattr(liver_gan.atomic.torch, "save", raising(errno.ENOSPC))
        argv = argv_of("liver-gan-train", *overrides, "trainer.max_steps=4", "trainer.resume=auto", f"hydra.run.dir={run}")
        return train_main, argv, run / "checkpoints"
    if case in ("read_only_out", "disk_full_export"):
        run = request.getfixturevalue("tiny_run")
        out = tmp_path / "E"
        out.mkdir()
        (out / "mine.txt").write_text("the user's")
        if case == "read_only_out":
            monkeypatch.setattr(liver_gan.atomic.tempfile, "mkdtemp", raising(errno.EROFS))
        else:
            monkeypatch.setattr(liver_gan.images, "save_png", raising(errno.ENOSPC))
        return (*sample(run, f"out={out}"), out)
    if case == "negative_seed":
        run = request.getfixturevalue("tiny_run")
        return (*sample(run, "seed=-1", f"out={tmp_path / 'E'}"), run)
    if case == "nan_window_level":
        return prepare_main, argv_of("liver-gan-prepare", *tiny_phantom_overrides(tmp_path)[6:], "dataset.window.level=nan",
                                     f"hydra.run.dir={tmp_path / 'run'}"), user_files(tmp_path)
    if case == "disk_full_dataset_build":
        monkeypatch.setattr(liver_gan.data.cache.np, "save", raising(errno.ENOSPC))
        return prepare_main, argv_of("liver-gan-prepare", *tiny_phantom_overrides(tmp_path)[6:],
                                     f"hydra.run.dir={tmp_path / 'run'}"), user_files(tmp_path)
    if case in ("non_image_png", "png_bomb"):
        real, fake = tmp_path / "real", tmp_path / "fake"
        for folder in (real, fake):
            folder.mkdir()
            for index in range(2):
                liver_gan.images.save_png(torch.zeros(8, 8, dtype=torch.uint8), folder / f"{index}.png")
        if case == "non_image_png":
            (fake / "2.png").write_text("not an image")
        else:
            bomb_png(fake / "2.png")
        return evaluate_main, argv_of("liver-gan-eval", f"real={real}", f"fake={fake}", "device=cpu",
                                      f"hydra.run.dir={tmp_path / 'eval_run'}"), tmp_path / "fake"
    if case in ("vtt_list_answer", "vtt_int_ids"):
        key, answers = tmp_path / "key.json", tmp_path / "answers.json"
        ids: Any = 7 if case == "vtt_int_ids" else ["a", "b"]
        key.write_text(json.dumps({"format": KEY_FORMAT, "test_id": "t", "ids": ids, "salt": "AAA=",
                                       "encoded_truth": "AAE="}))
        answers.write_text('{"test_id": "t", "answers": {"a": ["fake"], "b": "real"}}')
        return vtt_main, argv_of("liver-gan-vtt", "score", "--key", str(key), str(answers)), tmp_path
    raise AssertionError(case)


def test_a_reference_entry_that_is_a_file_is_refused_and_kept(tmp_path: Path) -> None:
    from test_caches import reference_key

    entry = tmp_path / reference_key().digest()
    entry.write_text("a file of the user's")
    with pytest.raises(LiverGanError, match="is a file where"):
        reference_statistics(reference_key(), tmp_path, lambda: np.zeros((3, 5), np.float32))
    assert entry.read_text() == "a file of the user's"


@pytest.mark.parametrize("text", ["{not: a list}", "- [unclosed", "42"])
def test_summary_marks_a_job_with_a_damaged_overrides_file_failed_and_goes_on(tmp_path: Path, text: str) -> None:
    for job, overrides in (("0", "- loss=-bce\n- name==cmd|calc\n"), ("1", text)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(overrides)
    jobs = {job.name: job for job in collect_jobs(tmp_path)}
    assert jobs["1"].status.value == "failed" and "overrides.yaml" in jobs["1"].detail
    csv_text = format_csv(list(jobs.values()))
    assert "'=cmd|calc" in csv_text and ",'-bce" in csv_text  # no cell a spreadsheet would run


def test_escape_sequences_from_a_checkpoint_reach_the_terminal_escaped(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A checkpoint's config naming dataset.name=lits and a root with ESC sequences and a newline."""
    hostile_root = "/nowhere\x1b]0;owned\x07\n\x1b[2J"
    overrides = [*tiny_phantom_overrides(tmp_path), "dataset.name=lits"]
    run = save_tiny_checkpoint(compose_config, tmp_path / "train", overrides)
    edited_checkpoint(run, lambda state: state["config"]["dataset"].update(root=hostile_root))
    monkeypatch.setattr(sys, "argv", ["liver-gan-sample", f"checkpoint={run}", "num_samples=2", "reject_memorised=true",
                                      "device=cpu", f"hydra.run.dir={tmp_path / 'sample_run'}"])
    with pytest.raises(SystemExit):
        sample_main()
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and len(err.strip().splitlines()) == 1
    assert "/nowhere\\x1b]0;owned\\x07\\n\\x1b[2J" in err


def read_only_under(folder: Path, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    """``folder`` as on a read-only file system (tests run as root, which may write anywhere): creating a
    dir in it fails with EROFS, or opening a log file there with EACCES."""
    if fault == "mkdir":
        real_mkdir = Path.mkdir

        def mkdir(path: Path, *args: Any, **kwargs: Any) -> None:
            if path.resolve().is_relative_to(folder.resolve()) and not path.exists():
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    else:
        real_open = logging.FileHandler._open

        def open_log(handler: logging.FileHandler) -> Any:
            if Path(handler.baseFilename).resolve().is_relative_to(folder.resolve()):
                raise PermissionError(errno.EACCES, "Permission denied", handler.baseFilename)
            return real_open(handler)

        monkeypatch.setattr(logging.FileHandler, "_open", open_log)


@pytest.mark.parametrize("fault", ["mkdir", "log_file"])
@pytest.mark.parametrize("tool", ["train", "prepare", "sample", "evaluate", "utility", "insert"])
def test_a_run_dir_on_a_read_only_folder_is_one_line(
    tool: str, fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hydra creates the run dir, its .hydra/ record and the log before any liver-gan code runs."""
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    (read_only / "mine.txt").write_text("the user's")
    run_dir = read_only / "run" if fault == "mkdir" else read_only
    extra = {"sample": ["checkpoint=nowhere", f"out={read_only / 'E'}"]}.get(tool, [])
    read_only_under(read_only, monkeypatch, fault)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"liver-gan-{tool}", *extra, f"hydra.run.dir={run_dir}"])
    before = checksums(read_only)
    with pytest.raises(SystemExit) as exit_info:
        getattr(scripts, tool)()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "cannot write the run dir" in err and str(read_only) in err and "hydra.run.dir=" in err, err
    assert checksums(read_only) == before
