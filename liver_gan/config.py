"""Structured configs: every tool's schema, and the one place that registers every schema.

A mistyped override (``optimizer.lrr=1``) or a wrong type (``trainer.epochs=abc``) fails when
Hydra composes the config, before any data is touched.  Each group's schema lives beside the code it
configures: dataset in liver_gan/data/schema.py, model in liver_gan/models/schema.py, augment in
liver_gan/augment_schema.py, loss in liver_gan/loss_schema.py, optimizer and trainer in
liver_gan/training/schema.py, eval in liver_gan/metrics/schema.py, classifier and segmenter in
liver_gan/downstream/schema.py, lesion in liver_gan/lesions/config.py.  The YAML files hold the values.

The tools' schemas (``TrainConfig`` ... ``InsertConfig``) stay here: they only compose the groups, and
what reads them sits on every level (runs.py, training/checkpoint.py, downstream/, cli/), so no one
package is their home; liver_gan/cli/ cannot be, since importing it imports this module.
:func:`register_configs` stores all of them in Hydra's ConfigStore.  Every module it imports is
torch-free, so that every tool's ``--help`` stays fast.

Hydra adds a key with ``+key=value`` (or ``++``) even to a schema-backed node: it lifts the
struct flag for that one update.  :func:`check_schema_keys`, run by every tool before its task,
refuses such keys, so ``+optimizer.lrr=1`` fails as ``optimizer.lrr=1`` does.

The group schemas are stored as top-level configs named ``<name>_schema``, outside every group, so
that they are no options: ``conf/model/dcgan.yaml`` extends ``/dcgan_schema``, and
``model=dcgan_schema`` does not compose.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf, ValueNode

from liver_gan.augment_schema import ADAConfig, AugmentConfig, DiffAugmentConfig
from liver_gan.data.schema import DatasetConfig
from liver_gan.downstream.schema import ClassifierConfig, SegmenterConfig
from liver_gan.errors import LiverGanError
from liver_gan.lesions.config import LearnedLesionConfig, ProceduralLesionConfig
from liver_gan.loss_schema import LossConfig
from liver_gan.metrics.schema import EvalConfig
from liver_gan.models.schema import (
    BaseModelConfig,
    DCGANConfig,
    DDPMConfig,
    InpaintConfig,
    MLPConfig,
    ModelConfig,
    StyleGAN2Config,
    require_registered_builder,
)
from liver_gan.training.schema import OptimizerConfig, TrainerConfig


@dataclass
class TrainConfig:
    dataset: DatasetConfig = MISSING
    model: BaseModelConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    loss: Optional[LossConfig] = None  # a GAN's (its model's YAML picks the default); a diffusion model has none
    # D's input augmentation (GANs only); runs saved before the group existed had none.
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    name: Optional[str] = None  # appended to the default run dir: outputs/train/<date_time>_<name>
    # The result liver-gan-train returns to a sweeper: a key of metrics.json (set by hparams_search presets).
    optimized_metric: str = "fid"
    print_config: Optional[bool] = None  # the composed config as a tree at start; None: when stdout is a terminal


@dataclass
class PrepareConfig:
    dataset: DatasetConfig = MISSING
    seed: int = 0
    export: Optional[str] = None  # imagefolder: also write train|val/healthy|tumor/*.png
    overwrite: bool = False  # replace an earlier imagefolder export (only the files it wrote)


@dataclass
class RunDataConfig:
    """Where a tool that opens a run reads the run's dataset (liver_gan/runs.py, ``run_dataset``).

    None: the folders the checkpoint names, only when they hold its data; else the current outputs/.
    """

    root: Optional[str] = None
    cache_dir: Optional[str] = None


@dataclass
class EvaluateConfig:
    """``liver-gan-eval``: a checkpoint against its dataset, or two image folders."""

    checkpoint: Optional[str] = None  # a run dir (uses checkpoints/last.pt) or a .pt file
    real: Optional[str] = None  # with fake: two image folders instead of a checkpoint
    fake: Optional[str] = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    dataset: RunDataConfig = field(default_factory=RunDataConfig)  # checkpoint=: where its dataset is read
    seed: int = 0  # noise of the generated images and KID subsets
    device: str = "auto"


class SampleFormat(str, Enum):
    """What ``liver-gan-sample`` writes (liver_gan/cli/sample.py, liver_gan/data/segmentation_export.py)."""

    png = "png"  # PNG folders and the .npy stacks
    npy = "npy"  # the .npy stacks only
    nifti = "nifti"  # one .nii.gz per slice in HU (and its _seg.nii.gz label map with masks)
    nnunet = "nnunet"  # an nnU-Net v2 raw dataset folder (needs masks)
    lits = "lits"  # volume-N / segmentation-N pairs (needs masks)


@dataclass
class SampleConfig:
    """``liver-gan-sample``: PNGs and a .npy stack, or NIfTI exports, from a trained generator."""

    checkpoint: str = MISSING  # a run dir (uses checkpoints/last.pt) or a .pt file
    num_samples: int = 64  # per class for a conditional model
    seed: int = 0
    out: Optional[str] = None  # default: the Hydra run dir
    batch_size: int = 256
    device: str = "auto"
    reject_memorised: bool = False  # replace samples nearer a training slice than memorisation_threshold
    memorisation_threshold: Optional[float] = None  # pixel RMS distance in [-1, 1] units; None: the val baseline
    format: SampleFormat = SampleFormat.png
    # The nnU-Net raw dataset folder written under out with format=nnunet (nnU-Net's DatasetXXX_Name form).
    nnunet_dataset: str = "Dataset900_LiverGanSynthetic"
    sample_steps: Optional[int] = None  # DDIM steps of a diffusion model (fewer: faster, coarser); None: the run's
    # One image per seed instead of num_samples from seed: "0-63", "7" or '0-3,10' (quoted); seed s, the same image.
    seeds: Optional[str] = None
    truncation_psi: float = 1.0  # GANs, < 1: nearer-average images, less variety (StyleGAN2: in w; DCGAN, MLP: z)
    interpolate: Optional[List[int]] = None  # seeds to walk through, e.g. [0,7]: a latent walk instead of samples
    interpolate_steps: int = 8  # images from each seed of interpolate to the next, both included
    reject_max_draws: int = 10  # reject_memorised: at most this many draws in place of rejected samples
    overwrite: bool = False  # png/npy: replace an earlier export in out (only the files it wrote)
    dataset: RunDataConfig = field(default_factory=RunDataConfig)  # where the run's dataset is read, when needed


class UtilityTask(str, Enum):
    classification = "classification"  # healthy vs tumor slices (liver_gan/downstream/classification.py)
    segmentation = "segmentation"  # liver and tumor masks (liver_gan/downstream/segmentation.py)
    realism = "realism"  # inserted tumors against real ones (liver_gan/downstream/realism.py; needs inserted=)
    nnunet = "nnunet"  # an insert run and its real patients as an nnU-Net v2 raw dataset at out= (needs inserted=)


class SyntheticClasses(str, Enum):
    matched = "matched"  # the class proportions of the real training slices
    balanced = "balanced"  # as many healthy as tumor slices


@dataclass
class UtilityConfig:
    """``liver-gan-utility``: a conditional ``generator``, or a ``tumor_generator`` and a ``healthy_generator``,
    or an insert run (``inserted``)."""

    generator: Optional[str] = None
    tumor_generator: Optional[str] = None
    healthy_generator: Optional[str] = None
    inserted: Optional[str] = None  # a liver-gan-insert run dir: its real data, split and painted volumes
    task: UtilityTask = UtilityTask.classification
    classifier: ClassifierConfig = MISSING  # task=classification, and task=realism's two-sample test
    segmenter: SegmenterConfig = MISSING  # task=segmentation (generators trained with dataset.masks=true)
    ratios: List[float] = field(default_factory=lambda: [0.5, 1.0])  # synthetic / real training slices
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    synthetic_classes: SyntheticClasses = SyntheticClasses.matched
    inception_weights: Optional[str] = None  # task=realism's FID and KID; None: $TORCH_HOME's pytorch-fid weights
    vtt_slices: int = 40  # task=realism: crops in the visual Turing test, half of them inserted
    out: Optional[str] = None  # task=nnunet: the new dataset folder, e.g. .../nnUNet_raw/Dataset501_LiverInserted
    device: str = "auto"


@dataclass
class InsertConfig:
    """``liver-gan-insert``: paint tumors into the training patients' healthy liver (liver_gan/lesions/insert.py)."""

    dataset: DatasetConfig = MISSING
    lesion: ProceduralLesionConfig = MISSING
    seed: int = 0  # the patient split (as prepare's) and every lesion's draws


# Each tool's primary config (conf/<tool>.yaml) extends <tool>_schema; each group's YAML files
# extend /<name>_schema.
SCHEMAS: dict[str, type] = {
    "train_schema": TrainConfig,
    "prepare_schema": PrepareConfig,
    "sample_schema": SampleConfig,
    "evaluate_schema": EvaluateConfig,
    "utility_schema": UtilityConfig,
    "insert_schema": InsertConfig,
    "procedural_lesion_schema": ProceduralLesionConfig,
    "learned_lesion_schema": LearnedLesionConfig,
    "dataset_schema": DatasetConfig,
    "mlp_schema": MLPConfig,
    "dcgan_schema": DCGANConfig,
    "stylegan2_schema": StyleGAN2Config,
    "ddpm_schema": DDPMConfig,
    "inpaint_schema": InpaintConfig,
    "optimizer_schema": OptimizerConfig,
    "loss_schema": LossConfig,
    "augment_schema": AugmentConfig,
    "diffaugment_schema": DiffAugmentConfig,
    "ada_schema": ADAConfig,
    "eval_schema": EvalConfig,
    "trainer_schema": TrainerConfig,
    "classifier_schema": ClassifierConfig,
    "segmenter_schema": SegmenterConfig,
}


def register_configs() -> None:
    """Register every schema, and the resolvers the YAMLs use; each tool (``liver_gan.cli.run_hydra_app``)
    calls it before Hydra composes."""
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)
    OmegaConf.register_new_resolver("by_family", by_family, replace=True)


def by_family(model_target: str, gan: Any, diffusion: Any) -> Any:
    """``${by_family:${model._target_},GAN,DIFFUSION}``: a preset's value for the model's family, so that
    one preset (experiment=quickstart) sizes a GAN and a diffusion model each to its own cost."""
    return gan if issubclass(require_registered_builder(model_target, "model._target_"), ModelConfig) else diffusion


def check_schema_keys(cfg: DictConfig, prefix: str = "") -> None:
    """Refuse a key that a node's schema lacks: one added with ``+`` or ``++`` on the command line.

    And values no option accepts, before any work: a NaN or infinite number (``dataset.window.level=nan``)
    and a negative ``seed`` (NumPy's generators take none).
    """
    schema = OmegaConf.get_type(cfg)
    fields = [field.name for field in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else None
    for key in cfg:
        _check_value(f"{prefix}{key}", cfg._get_node(key))
        if fields is not None and key not in fields:
            raise LiverGanError(
                f"{prefix}{key}: no such key in {schema.__name__} ({schema_file(schema)}); "
                f"its keys are {', '.join(fields)}; check the spelling ('+' cannot add keys to a schema)"
            )
        child = cfg._get_node(key)
        if isinstance(child, DictConfig):
            check_schema_keys(child, f"{prefix}{key}.")


def schema_file(schema: type) -> str:
    """The source file that declares ``schema``, as error messages name it: ``liver_gan/data/schema.py``."""
    return schema.__module__.replace(".", "/") + ".py"


def _check_value(key: str, node: Any) -> None:
    if not isinstance(node, ValueNode) or node._is_missing() or node._is_interpolation():
        return
    value = node._value()
    if isinstance(value, float) and not math.isfinite(value):
        raise LiverGanError(f"{key}={value}: use a finite number")
    if key.rpartition(".")[2] == "seed" and isinstance(value, int) and value < 0:
        raise LiverGanError(f"{key}={value}: use a seed of 0 or more")
