"""Structured configs: the schema every YAML file under ``conf/`` is validated against.

A mistyped override (``optimizer.lrr=1``) or a wrong type (``trainer.epochs=abc``) fails when
Hydra composes the config, before any data is touched.  Every tool's schema and every group's
schema lives here and is registered in Hydra's ConfigStore by :func:`register_configs`; the YAML
files hold the values.

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

from liver_gan.errors import LiverGanError
from liver_gan.lesions.config import LearnedLesionConfig, ProceduralLesionConfig


class DatasetName(str, Enum):
    phantom = "phantom"
    lits = "lits"
    msd = "msd"


class Layout(str, Enum):
    lits = "lits"  # volume-N / segmentation-N pairs, found recursively
    msd = "msd"  # Task03_Liver/imagesTr + labelsTr


class Subset(str, Enum):
    tumor = "tumor"
    healthy = "healthy"
    all = "all"


class Crop(str, Enum):
    none = "none"
    liver = "liver"


class Conditioning(str, Enum):
    projection = "projection"
    concat = "concat"


class Prediction(str, Enum):
    """What a diffusion network predicts (MONAI's ``prediction_type``)."""

    epsilon = "epsilon"  # the added noise (Ho et al. 2020)
    v = "v"  # the velocity sqrt(a_t) * noise - sqrt(1 - a_t) * x_0 (Salimans & Ho 2022)


class NoiseSchedule(str, Enum):
    """MONAI's named beta schedules (``monai.networks.schedulers.NoiseSchedules``)."""

    linear_beta = "linear_beta"  # Ho et al. (2020): betas from 1e-4 to 0.02
    scaled_linear_beta = "scaled_linear_beta"
    sigmoid_beta = "sigmoid_beta"
    cosine = "cosine"  # Nichol & Dhariwal (2021)


class OptimizerImplementation(str, Enum):
    auto = "auto"
    fused = "fused"
    foreach = "foreach"
    for_loop = "for_loop"


class LossName(str, Enum):
    bce = "bce"
    nonsaturating = "nonsaturating"
    hinge = "hinge"
    wgan_gp = "wgan_gp"


class RealPool(str, Enum):
    train = "train"
    val = "val"
    both = "both"


@dataclass
class HUWindow:
    """Hounsfield-unit window: values in [level - width/2, level + width/2] map to [-1, 1]."""

    level: float = 50.0
    width: float = 400.0


@dataclass
class PhantomConfig:
    """Size of the synthetic LiTS-format phantom written when ``dataset.name=phantom``."""

    num_volumes: int = 16
    in_plane: int = 192
    min_slices: int = 48
    max_slices: int = 72
    seed: int = 2024


@dataclass
class DatasetConfig:
    name: DatasetName = MISSING
    layout: Layout = Layout.lits
    root: str = MISSING
    resolution: int = 64
    subset: Subset = Subset.all  # every tool's default (tumor or healthy: one class); all keeps the class label
    window: HUWindow = field(default_factory=HUWindow)
    crop: Crop = Crop.none
    crop_margin: float = 0.15  # fraction of the liver bounding box added on each side
    # Smallest crop, as a fraction of the slice: the liver's first and last slices have tiny
    # bounding boxes, which would otherwise be blown up into blurry patches.
    crop_min_fraction: float = 0.35
    # Each slice also carries its liver and tumor masks as extra image channels (liver_gan/data/masks.py),
    # so that models generate image and label map together.
    masks: bool = False
    val_fraction: float = 0.1
    # Patient ids held out for validation and for testing; when set they override val_fraction
    # (liver_gan/data/dataset.py, split_patients). Test patients never reach training or validation.
    val_patients: Optional[List[int]] = None
    test_patients: Optional[List[int]] = None
    cache_dir: str = "outputs/cache"
    num_workers: int = 2
    skip_bad: bool = False
    phantom: PhantomConfig = field(default_factory=PhantomConfig)


@dataclass
class BaseModelConfig:
    """Fields of every model family, GAN or diffusion; ``_target_`` builds the family's networks."""

    _target_: str = MISSING
    conditional: bool = False


@dataclass
class ModelConfig(BaseModelConfig):
    """Common fields of every GAN family; ``_target_`` builds (generator, discriminator)."""

    latent_dim: int = 100
    conditioning: Conditioning = Conditioning.projection  # how D sees the class label


@dataclass
class MLPConfig(ModelConfig):
    """The thesis's Table 2 MLP GAN."""

    _target_: str = "liver_gan.models.mlp.build_mlp_gan"
    generator_widths: List[int] = field(default_factory=lambda: [256, 512, 1024])
    discriminator_widths: List[int] = field(default_factory=lambda: [512, 256])


@dataclass
class DCGANConfig(ModelConfig):
    """Radford et al. (2016) DCGAN, extended with stages for 128 and 256 pixels."""

    _target_: str = "liver_gan.models.dcgan.build_dcgan"
    generator_channels: int = 64
    discriminator_channels: int = 64


@dataclass
class StyleGAN2Config(ModelConfig):
    """Karras et al. (2020) StyleGAN2: widths are min(channel_base / size, channel_max) per size."""

    _target_: str = "liver_gan.models.stylegan2.build_stylegan2"
    latent_dim: int = 256
    style_dim: int = 256  # w
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    # A sixteenth of the paper's 32768 (32 channels at 64 px, 256 from 8 px down), so that 64 px
    # costs about what DCGAN does on a CPU; raise both on a GPU.
    channel_base: int = 2048
    channel_max: int = 256
    mbstd_group_size: int = 4


@dataclass
class DDPMConfig(BaseModelConfig):
    """A denoising diffusion model on MONAI: DDPM training, DDIM sampling, classifier-free guidance.

    The U-Net fields are ``monai.networks.nets.DiffusionModelUNet``'s; the defaults are small enough
    for a CPU, with self-attention only at the lowest resolution.
    """

    _target_: str = "liver_gan.models.ddpm.build_ddpm"
    prediction: Prediction = Prediction.epsilon
    num_train_timesteps: int = 1000
    schedule: NoiseSchedule = NoiseSchedule.linear_beta
    sample_steps: int = 50  # DDIM steps per image: fewer is faster and coarser
    # 1 is the plain conditional model; s > 1 trades diversity for fidelity (conditional only).
    guidance_scale: float = 1.0
    # Fraction of training labels replaced by the null class, which guidance needs (conditional only).
    label_dropout: float = 0.1
    channels: List[int] = field(default_factory=lambda: [32, 64, 64])  # one entry per resolution level
    # Self-attention per level; MONAI's middle block attends at the last level in any case.
    attention_levels: List[bool] = field(default_factory=lambda: [False, False, True])
    num_res_blocks: int = 1
    # GroupNorm groups; every entry of channels must be a multiple.  A group needs several channels:
    # with one channel per group (MONAI's 32 at 32 channels) GroupNorm removes the per-channel shift
    # by which the timestep and class embeddings enter each block.
    norm_num_groups: int = 8
    num_head_channels: int = 32  # channels per attention head


@dataclass
class InpaintConfig(BaseModelConfig):
    """A pix2pix-style inpainter (Isola et al. 2017) for ``lesion=learned``: a MONAI ``UNet`` fills a
    hole in a liver-centred crop and a MONAI ``PatchDiscriminator`` judges the filled crop.

    Trained by liver_gan/training/inpaint_step.py on slices with their masks (``dataset.crop=liver``,
    ``dataset.masks=true``); each hole is the slice's tumor, dilated, sometimes with random blobs in the liver.
    """

    _target_: str = "liver_gan.models.inpaint.build_inpainter"
    channels: List[int] = field(default_factory=lambda: [16, 32, 64])  # U-Net channels per level
    strides: List[int] = field(default_factory=lambda: [2, 2])  # one fewer than channels
    num_res_units: int = 1
    discriminator_channels: int = 16  # the PatchGAN's first layer, doubled per layer
    discriminator_layers: int = 2  # layers after the first; the PatchGAN judges a grid of R / 2**layers patches
    l1_weight: float = 100.0  # the L1 term inside the hole against the adversarial term (pix2pix's lambda)
    hole_dilation: int = 2  # pixels at dataset.resolution by which a tumor mask grows into its hole
    blob_probability: float = 0.5  # chance that a training hole also gets random blobs inside the liver
    blob_grid: int = 8  # the blobs' smooth noise is drawn on a grid of this many cells a side
    blob_threshold: float = 1.0  # noise above this (in standard deviations) is a blob: higher, fewer and smaller


@dataclass
class OptimizerConfig:
    """One optimizer class for both networks; ``d_lr`` defaults to ``lr``."""

    _target_: str = MISSING  # a torch.optim class, e.g. torch.optim.Adam
    lr: float = 2e-4
    d_lr: Optional[float] = None
    betas: List[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 0.0
    implementation: OptimizerImplementation = OptimizerImplementation.auto


@dataclass
class LossConfig:
    name: LossName = MISSING
    gradient_penalty: float = 0.0  # WGAN-GP lambda, or the R1 gamma of nonsaturating
    # R1 on every n-th D step only, scaled by n (StyleGAN2's lazy regularization uses 16); 1: every step.
    r1_interval: int = 1


@dataclass
class FIDConfig:
    """Options only FID reads (liver_gan/metrics/registry.py, ``fid``)."""

    save_images: bool = False  # write the measured images to fid_images/{real,fake}/ for pytorch-fid's CLI


@dataclass
class KIDConfig:
    """Options only KID reads (liver_gan/metrics/kid.py)."""

    num_subsets: int = 100
    subset_size: int = 1000


@dataclass
class SegmenterConfig:
    """A 2D MONAI ``UNet`` for liver and tumor, and how it trains (liver_gan/downstream/segmentation.py).

    Used by the mask checks of the evaluation (``eval.segmenter``) and by ``liver-gan-utility
    task=segmentation`` (the ``segmenter`` group).  Every arm, seed and check trains it the same way.
    """

    channels: List[int] = field(default_factory=lambda: [16, 32, 64])  # per U-Net level
    strides: List[int] = field(default_factory=lambda: [2, 2])  # one fewer than channels
    num_res_units: int = 1
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    horizontal_flip: bool = False  # off by default: it swaps the liver's side


@dataclass
class EvalConfig:
    """The end-of-run evaluation (liver_gan/metrics/evaluate.py): these keys serve every metric."""

    enabled: bool = True
    # Names registered in liver_gan/metrics/registry.py, computed in this order.
    # masks: only where the slices carry them (dataset.masks=true).
    metrics: List[str] = field(
        default_factory=lambda: [
            "fid", "kid", "precision_recall", "density_coverage", "diversity", "memorisation", "masks"
        ]
    )
    # Generated images; null: twice the real images compared, at most 2048 (sized to the data).
    num_samples: Optional[int] = None
    max_real: int = 2048  # real images of real_pool: a fixed random choice of this many when it holds more
    real_pool: RealPool = RealPool.train
    batch_size: int = 50  # images per Inception pass
    inception_weights: Optional[str] = None  # path to pt_inception-2015-12-05-6726825d.pth for offline use
    cache_dir: str = "outputs/cache/reference_stats"
    fid: FIDConfig = field(default_factory=FIDConfig)
    kid: KIDConfig = field(default_factory=KIDConfig)
    # The image-mask agreement check of the masks metric (dataset.masks=true): a U-Net trained on the real train split.
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    # FID during training (liver_gan/training/snapshots.py): every this many thousand training images,
    # appended to metrics.jsonl and kept as checkpoints/best.pt at its lowest; None: only the final evaluation.
    every_kimg: Optional[float] = None
    snapshot_samples: int = 256  # generated images per snapshot FID (the final evaluation keeps num_samples)


class AugmentOp(str, Enum):
    translation = "translation"  # integer shifts, air (-1) shifted in
    cutout = "cutout"  # a square set to 0
    intensity = "intensity"  # brightness (window level) and contrast (window width)
    flip = "flip"  # left-right; off by default: it swaps the liver's side


@dataclass
class AugmentConfig:
    """``augment=none`` (no ops: D sees the images as they are); the options every augmentation shares.

    A saved ``none`` thus names its empty ``ops``, and a checkpoint's augmentation reloads as it was.
    """

    _target_: str = "liver_gan.augment.Augment"
    ops: List[AugmentOp] = field(default_factory=list)
    translation: float = 0.125  # largest shift, as a fraction of the image side
    cutout: float = 0.5  # side of the cut-out square, as a fraction of the image side
    brightness: float = 0.25  # largest shift of the [-1, 1] intensities (50 HU at width 400)
    contrast: float = 0.25  # largest relative change of the contrast around the image mean


@dataclass
class DiffAugmentConfig(AugmentConfig):
    """Zhao et al. (2020): the same differentiable ops on real and fake images before D."""

    ops: List[AugmentOp] = field(
        default_factory=lambda: [AugmentOp.translation, AugmentOp.cutout, AugmentOp.intensity]
    )


@dataclass
class ADAConfig(DiffAugmentConfig):
    """Karras et al. (2020a): each op applied with a probability p steered by D's overfitting."""

    _target_: str = "liver_gan.augment.AdaptiveAugment"
    target: float = 0.6  # the wanted E[sign(D(real))]
    ada_kimg: float = 500.0  # thousands of images over which p can move from 0 to 1
    adjust_every: int = 4  # D steps between adjustments of p


@dataclass
class TrainerConfig:
    epochs: int = 20
    max_steps: Optional[int] = None
    # Stop after this many minutes of training, then evaluate and checkpoint as at any end (SLURM
    # time limits, "30 minutes each" comparisons); None: no time budget.
    max_minutes: Optional[float] = None
    batch_size: int = 64
    log_every: int = 50  # TensorBoard scalars every this many steps, and at the last step
    tick_seconds: float = 30.0  # a progress line (step, kimg, images/s, ETA, memory) this often; 0: every step
    sample_every: int = 5
    checkpoint_every: int = 5
    num_fixed_samples: int = 64
    # Half-life, in thousands of images, of the generator's exponential moving average
    # (stylegan2-ada's ema_kimg; it uses 10).  The EMA copy draws the sample grids and serves
    # evaluation and every tool that opens the run.  None: no EMA copy.
    ema_kimg: Optional[float] = None
    # stylegan2-ada's ema_rampup: the half-life is at most this fraction of the images seen so far,
    # so that the copy follows the fast early training instead of averaging in the first weights.
    # None: the half-life is ema_kimg from the first step.
    ema_rampup: Optional[float] = None
    resume: str = "none"  # none | auto | path to a checkpoint
    overwrite: bool = False  # start afresh in a run dir that holds checkpoints, replacing that run
    keep_last_n: Optional[int] = None  # epoch checkpoints kept besides last.pt; None keeps all
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # bf16 autocast on cuda
    deterministic: bool = False
    # torch's intra-op threads (liver_gan/training/threads.py). None: the usable cores divided by the
    # jobs that run at once on this machine (a joblib sweep's n_jobs, torchrun's local ranks), so
    # that concurrent runs share the cores instead of each starting one thread per core.
    num_threads: Optional[int] = None


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
class ClassifierConfig:
    """The healthy-vs-tumor classifier and how it is trained; the same for every arm and seed.

    ``model`` is instantiated with ``resolution=R`` and must map (N, 1, R, R) images in [-1, 1] to
    (N,) tumor logits, so a user's own network drops in with its own ``_target_`` and arguments.
    """

    model: Any = MISSING
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    horizontal_flip: bool = True
    vertical_flip: bool = False


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
    from liver_gan.models import require_registered_builder  # the model registry imports torch

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
                f"{prefix}{key}: no such key in {schema.__name__} (liver_gan/config.py); "
                f"its keys are {', '.join(fields)}; check the spelling ('+' cannot add keys to a schema)"
            )
        child = cfg._get_node(key)
        if isinstance(child, DictConfig):
            check_schema_keys(child, f"{prefix}{key}.")


def _check_value(key: str, node: Any) -> None:
    if not isinstance(node, ValueNode) or node._is_missing() or node._is_interpolation():
        return
    value = node._value()
    if isinstance(value, float) and not math.isfinite(value):
        raise LiverGanError(f"{key}={value}: use a finite number")
    if key.rpartition(".")[2] == "seed" and isinstance(value, int) and value < 0:
        raise LiverGanError(f"{key}={value}: use a seed of 0 or more")
