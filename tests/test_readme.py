"""The README's set-up commands are what users and CI run, and its statements about the code are
what the code does: keep them true."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import open_dict
from setuptools._distutils.filelist import FileList
from torch import nn

from liver_gan.cli import CONFIG_DIR, cache, scripts, summary, vtt
from liver_gan.cli.hydra_errors import COMPOSITION_ERRORS, one_line
from liver_gan.cli.torch_versions import check_torch_pair
from liver_gan.config import check_schema_keys, register_configs
from liver_gan.metrics.evaluate import AUTO_MAX_SAMPLES, generated_count
from liver_gan.metrics.schema import EvalConfig
from liver_gan.training.samples import write_samples
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


# ---- The commands and links of README.md and docs/*.md ----------------------------------------

DOC_PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
HYDRA_TOOLS = {
    "liver-gan-train": "train",
    "liver-gan-prepare": "prepare",
    "liver-gan-sample": "sample",
    "liver-gan-eval": "evaluate",
    "liver-gan-utility": "utility",
    "liver-gan-insert": "insert",
}
ARGPARSE_TOOLS = {
    "liver-gan-summary": summary.parse_args,
    "liver-gan-cache": cache.parse_args,
    "liver-gan-vtt": vtt.parse_args,
}
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<"}
HEREDOC = re.compile(r"cat\s+>\s*(\S+)\s+<<-?\s*'?(\w+)'?\s*$")


@dataclass(frozen=True)
class DocCommand:
    """One ``liver-gan-*`` command of a ```bash block, with the files its block writes by heredoc."""

    where: str
    argv: tuple[str, ...]
    files: tuple[tuple[str, str], ...]


def _bash_blocks(page: Path) -> list[tuple[int, list[str]]]:
    """Each ```bash block of ``page``: its first line number and its lines, continuations joined."""
    blocks: list[tuple[int, list[str]]] = []
    lines: list[str] | None = None
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        if lines is None and line.strip() == "```bash":
            blocks.append((number + 1, lines := []))
        elif lines is not None and line.strip() == "```":
            lines = None
        elif lines is not None:
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + line.strip()
            else:
                lines.append(line)
    return blocks


def _without_comment(line: str) -> str:
    """``line`` up to its comment: a # outside quotes that starts a word, as the shell reads it."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def _words(line: str) -> list[str]:
    """The shell words of ``line`` before its comment, placeholders filled."""
    line = re.sub(r"\$\(which (liver-gan-[\w-]+)\)", r"\1", _without_comment(line))
    return shlex.split(re.sub(r"<[^<>\s]+>", "placeholder", line))


def _doc_commands() -> list[DocCommand]:
    commands = []
    for page in DOC_PAGES:
        for first_line, lines in _bash_blocks(page):
            files, body, heredoc, shell_lines = [], [], None, []
            for offset, line in enumerate(lines):
                if heredoc:
                    if line.strip() == heredoc[1]:
                        files.append((heredoc[0], "\n".join(body) + "\n"))
                        heredoc, body = None, []
                    else:
                        body.append(line)
                    continue
                if match := HEREDOC.search(line):
                    heredoc = match.groups()
                shell_lines.append((offset, line))
            for offset, line in shell_lines:
                words = _words(line)
                start = next((index for index, word in enumerate(words) if word.startswith("liver-gan-")), None)
                if start is None:
                    continue
                end = next((index for index in range(start, len(words)) if words[index] in SHELL_OPERATORS), len(words))
                argv = tuple(word for word in words[start:end] if word != "...")
                where = f"{page.relative_to(REPO_ROOT)}:{first_line + offset}"
                commands.append(DocCommand(where, argv, tuple(files)))
    return commands


def _unique(commands: list[DocCommand]) -> list[DocCommand]:
    """One of each command (the README repeats some of the pages' examples), named by every place it is."""
    places: dict[tuple[object, ...], list[str]] = {}
    for command in commands:
        places.setdefault((command.argv, command.files), []).append(command.where)
    return [DocCommand(",".join(where), argv, files) for (argv, files), where in places.items()]


def _hydra_jobs(argv: tuple[str, ...], cwd: Path) -> list[list[str]]:
    """The overrides of each job the command line starts (one, or one per combination of a sweep)."""
    overrides, words = [], iter(argv[1:])
    for word in words:
        if word in ("-m", "--multirun"):
            continue
        if word == "--config-dir":
            overrides.append(f"hydra.searchpath=[file://{(cwd / next(words)).resolve()}]")
        elif word in ("--cfg", "-p", "--package"):
            next(words)
        elif word.startswith("-"):
            raise AssertionError(f"{word}: a flag this test does not know; teach _hydra_jobs what it means")
        else:
            overrides.append(word)
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _why_it_fails(command: DocCommand, cwd: Path) -> str | None:
    """None when ``command`` composes (a Hydra tool) or parses (an argparse tool), else why not."""
    tool, *arguments = command.argv
    for path, text in command.files:
        (cwd / path).parent.mkdir(parents=True, exist_ok=True)
        (cwd / path).write_text(text)
    try:
        if tool in ARGPARSE_TOOLS:
            ARGPARSE_TOOLS[tool](arguments)
            return None
        if tool not in HYDRA_TOOLS:
            return f"{tool}: not a liver-gan tool"
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            for job in _hydra_jobs(command.argv, cwd):
                cfg = compose(config_name=HYDRA_TOOLS[tool], overrides=job, return_hydra_config=True)
                with open_dict(cfg):
                    del cfg["hydra"]  # what compose(return_hydra_config=False) does: the task's config
                check_schema_keys(cfg)
    except SystemExit as exit_info:
        return f"argparse refused it (exit {exit_info.code})"
    except Exception as error:  # noqa: BLE001 - any failure to compose is the finding
        return f"{type(error).__name__}: {one_line(error) if isinstance(error, COMPOSITION_ERRORS) else error}"
    return None


DOC_COMMANDS = _unique(_doc_commands())


@pytest.mark.parametrize("command", DOC_COMMANDS, ids=[command.where for command in DOC_COMMANDS])
def test_every_documented_command_composes(
    command: DocCommand, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every ``liver-gan-*`` command in a ```bash block of README.md or docs/*.md is one a user can
    type: a Hydra tool's command line composes its primary config through Hydra's compose API,
    with the schemas' key check the tools apply at start (every job of a ``-m`` sweep); an argparse
    tool's parses. Nothing runs. The rule, kept simple:

    - a command is the words from the first ``liver-gan-*`` word of a line (also after ``torchrun
      $(which liver-gan-train)`` or ``| xargs``) to a shell operator or a ``#`` comment; lines end
      with ``\\`` continue; ``...`` (an elided rest) is dropped; other commands are not checked;
    - placeholders stand for any value: ``<date_time>``, ``<run>`` and the like become a plain
      word, and words such as DIR or RUN_DIR compose as they are (composition checks no paths);
    - a block that writes a file by heredoc (``cat > my_conf/x.yaml <<'YAML'``) has it written,
      relative to the temporary folder its commands compose in, so ``--config-dir my_conf`` and
      ``hydra.searchpath=[file://my_conf]`` find it.
    """
    register_configs()
    monkeypatch.chdir(tmp_path)
    failure = _why_it_fails(command, tmp_path)
    assert failure is None, f"{command.where}: {' '.join(command.argv)}: {failure}\n{capsys.readouterr().err}"


@pytest.mark.filterwarnings("ignore:provider=hydra.searchpath in command-line")
def test_the_documented_commands_are_found_and_a_wrong_one_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = {command.argv[0] for command in DOC_COMMANDS}
    assert tools == set(HYDRA_TOOLS) | set(ARGPARSE_TOOLS), tools
    register_configs()
    monkeypatch.chdir(tmp_path)
    wrong = [
        "liver-gan-train optimizer.lrr=1",
        "liver-gan-train +optimizer.lrr=1",
        "liver-gan-train -m model=mlp,dcgn",
        "liver-gan-train --config-dir my_conf experiment=my_preset",
        "liver-gan-sample checkpoint=x num_sample=4",
        "liver-gan-vtt make --generator x --nmu 4",
        "liver-gan-cache prune --all --yess",
    ]
    for line in wrong:
        assert _why_it_fails(DocCommand("test", tuple(_words(line)), ()), tmp_path), line


MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", DOC_PAGES, ids=[str(page.relative_to(REPO_ROOT)) for page in DOC_PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in MARKDOWN_LINK.findall(page.read_text()):
        if re.match(r"\w+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", linked.read_text(), re.M)
            if anchor not in {_anchor(heading) for heading in headings}:
                broken.append(target)
    assert not broken, f"{page.relative_to(REPO_ROOT)}: {broken}"


def test_the_readme_stays_a_first_hour_read() -> None:
    """Issue 25: what a user needs in the first hour, in at most about 400 lines; the rest is in docs/."""
    assert len(_readme().splitlines()) <= 400, "move a topic's detail into its docs/ page"


def test_the_readme_links_every_docs_page() -> None:
    linked = {(REPO_ROOT / target).resolve() for target in MARKDOWN_LINK.findall(_readme())}
    assert DOC_PAGES[1:], "docs/ holds the pages the README links"
    assert not [page.name for page in DOC_PAGES[1:] if page not in linked]


def test_the_sdist_carries_the_docs_pages_and_what_they_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """MANIFEST.in, read as setuptools reads it: the docs, and every file they link, ship in the sdist."""
    monkeypatch.chdir(REPO_ROOT)
    shipped = FileList()
    shipped.findall()
    for line in (REPO_ROOT / "MANIFEST.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            shipped.process_template_line(line)
    carried = {Path(name) for name in shipped.files} | {Path("README.md")}  # the readme of pyproject.toml
    wanted = {page.relative_to(REPO_ROOT) for page in DOC_PAGES}
    for page in DOC_PAGES:
        for target in MARKDOWN_LINK.findall(page.read_text()):
            path = target.partition("#")[0]
            if path and not re.match(r"\w+://", path) and (page.parent / path).resolve().is_file():
                wanted.add((page.parent / path).resolve().relative_to(REPO_ROOT))
    assert not sorted(str(path) for path in wanted - carried)
