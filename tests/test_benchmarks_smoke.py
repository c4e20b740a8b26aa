"""The benchmark scripts' smallest pieces, run for structure (never speed), so they cannot rot unseen.

The benchmarks call liver-gan's public APIs (train_step, build_optimizers, prepare_dataset, the
reference cache); a change there breaks these tests instead of the next benchmark run.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    """Import a benchmark module the way ``python benchmarks/run.py`` does (benchmarks/ on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS_DIR))

    def load(name: str) -> ModuleType:
        return importlib.import_module(name)

    return load


def test_matmul_limit_counts_table2_gemms(bench) -> None:
    gemm_limit = bench("gemm_limit")
    thesis_pipeline = bench("thesis_pipeline")
    generator, discriminator = thesis_pipeline.thesis_models()
    gemms = gemm_limit.gan_step_gemms(generator, discriminator, batch=64)
    # G: 4 forward, 4 weight-gradient, 3 input-gradient (none for z); D: 3 forward on real and fake
    # joined and 3 on fake again, 3 weight- and 2 input-gradient on the joined batch, 3 input-gradient
    # in G's step (no weight gradients: D is not being updated there).
    assert len(gemms) == 4 + 4 + 3 + 6 + 3 + 2 + 3
    assert [gemm.m for gemm in gemms[4:7]] == [128, 128, 128]  # after G's forward: D on the joined batch
    g_macs = 100 * 256 + 256 * 512 + 512 * 1024 + 1024 * 4096
    d_macs = 4096 * 512 + 512 * 256 + 256 * 1
    g_step = 3 * g_macs - 100 * 256
    d_step = 2 * (3 * d_macs - 4096 * 512) + 2 * d_macs
    assert sum(gemm.flops for gemm in gemms) == 2 * 64 * (g_step + d_step)
    gemm_limit.gemm_runner(gemms[:3])()


def test_loops_take_steps(bench, compose_config, tmp_path: Path) -> None:
    training = bench("training")
    thesis_pipeline = bench("thesis_pipeline")
    images = torch.rand(130, 1, 64, 64) * 2 - 1
    training.in_memory_thesis_loop(images)(2)
    cfg = compose_config(["experiment=thesis", "trainer.device=cpu", f"dataset.cache_dir={tmp_path}"])
    training.liver_gan_loop(cfg, images)(2)
    d_loss, g_loss = thesis_pipeline.thesis_training()(images[:4])
    assert np.isfinite([d_loss, g_loss]).all()


def test_thesis_loader_gives_normalised_64px_batches(bench, tmp_path: Path) -> None:
    thesis_pipeline = bench("thesis_pipeline")
    (tmp_path / "tumor").mkdir()
    for index in range(3):
        pixels = np.random.default_rng(index).integers(0, 256, (512, 512), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "tumor" / f"{index}.png")
    batch = next(thesis_pipeline.epoch_batches(thesis_pipeline.thesis_loader(tmp_path, num_workers=0), steps=1))
    assert batch.shape == (3, 1, 64, 64)
    assert -1 <= batch.min() < batch.max() <= 1


def test_ct_like_volumes_read_by_nibabel(bench, tmp_path: Path) -> None:
    dataset_build = bench("dataset_build")
    directory = dataset_build.write_ct_like_volumes(tmp_path, [12])
    [(volume, segmentation)] = dataset_build.volume_pairs(directory)
    assert nib.load(volume).get_data_dtype() == np.int16
    assert set(np.unique(np.asanyarray(nib.load(segmentation).dataobj))) == {0, 1, 2}
    assert dataset_build.load_with_nibabel([(volume, segmentation)]) == 2 * 512 * 512 * 12


def test_feature_agreement_flags_batch_size_dependence(bench) -> None:
    fid = bench("fid")
    features = np.zeros((4, 2048), dtype=np.float32)
    assert "exact within float32 tolerance" in fid.feature_agreement({50: features, 100: features.copy()})[-1]
    assert "NOT exact" in fid.feature_agreement({50: features, 100: features + 1})[-1]


def test_report_renders_figures_checks_and_unmeasured_rows(bench) -> None:
    measure = bench("measure")
    report = bench("report")
    section = measure.Section("Speed")
    fast = section.add(measure.Figure("ours", "steps/s", (20.0, 30.0, 25.0), limit="GEMMs"))
    slow = section.add(measure.Figure("thesis", "steps/s", (5.0, 6.0, 7.0)))
    section.ratio("ours / thesis", fast, slow, at_least=4.0)
    section.unmeasured.append(("on a GPU", measure.GPU_NOT_MEASURED))
    text = report.results_markdown([section], [("CPU", "test")], "python benchmarks/run.py", repeats=3)
    assert "| ours | steps/s | 20.0 | 25.0 | 30.0 | GEMMs |" in text
    assert "| ours / thesis | 4.17 | >= 4 | met |" in text
    assert measure.GPU_NOT_MEASURED in text


def test_take_turns_runs_one_of_each_per_round(bench) -> None:
    measure = bench("measure")
    order: list[str] = []

    def recorder(name: str, value: float):
        return lambda: order.append(name) or value

    turns = measure.take_turns({"a": recorder("a", 1.0), "b": recorder("b", 2.0)}, repeats=3)
    assert order == ["a", "b"] * 3
    assert turns == {"a": (1.0, 1.0, 1.0), "b": (2.0, 2.0, 2.0)}


def test_gpu_rows_say_they_were_not_measured_without_a_gpu(bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    training, measure = bench("training"), bench("measure")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    section = training.benchmark_gpu(tmp_path, quick=True, repeats=1)
    expected = [f"model={model} at {size}x{size}" for model in training.GPU_MODELS for size in (64, 128, 256)]
    assert section.unmeasured == [(row, measure.GPU_NOT_MEASURED) for row in expected]
    assert not section.figures


def test_ddpm_benchmark_trains_and_samples(bench, tmp_path: Path) -> None:
    ddpm = bench("ddpm")
    tiny = ["model.channels=[8,8]", "model.attention_levels=[false,true]", "model.norm_num_groups=4",
            "model.num_head_channels=8", "model.num_train_timesteps=20", "model.sample_steps=2"]
    cfg = ddpm.ddpm_config(tmp_path, 16, *tiny)
    assert len(ddpm.training_rates(cfg, steps=1, repeats=1)) == 1
    [rate] = ddpm.sampling_rates(ddpm.sampling_model(cfg), 2, repeats=1)
    assert rate > 0


def test_augment_benchmark_composes_each_arm_and_ranks_by_median(
    bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each arm is the default run with its augment= and seed=; the ratios come from the runs' median FIDs."""
    quality = bench("quality")
    composed = []

    def fake_train(cfg, workdir):  # the run itself is benchmarked, not tested: its metrics stand in
        ops = [op.value for op in cfg.augment.ops]
        composed.append((cfg.seed, ops, cfg.trainer.num_threads))
        fid = {0: 300.0, 3: 200.0}[len(ops)] + cfg.seed
        return {"fid": fid, "fid_over_floor": fid / 10, "kid_mean": 0.3, "train_seconds": 70.0, "steps": 700}

    monkeypatch.setattr(quality, "train_in_scratch_dir", fake_train)
    (section,) = quality.benchmark_augment(tmp_path, quick=False, repeats=1)
    diffaugment = ["translation", "cutout", "intensity"]  # ada's ops too: its p decides how often
    assert sorted(composed) == sorted((seed, ops, 1) for seed in (0, 1) for ops in ([], diffaugment, diffaugment))
    ratios = {check.label: check.value for check in section.checks}
    assert ratios["diffaugment FID / none FID (medians)"] == pytest.approx(200.5 / 300.5)


def test_markdown_never_replaces_an_existing_page(bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """BENCHMARKS.md holds hand-written sections that a rewrite would lose: an existing file is refused at the start."""
    run = bench("run")
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("## GPU\n\nmeasured by hand\n")
    with pytest.raises(SystemExit) as refused:
        run.main(["--only", "dataset_build", "--markdown", str(page), "--workdir", str(tmp_path / "work")])
    assert refused.value.code == 2 and "that file exists" in capsys.readouterr().err
    assert page.read_text() == "## GPU\n\nmeasured by hand\n" and not (tmp_path / "work").exists()
