"""The benchmarks' shared harness: machine, models, data, evaluation, CSV rows and plots.

The scripts in this folder (``curves.py``, ``accuracy.py``, ``speed.py`` and the others)
are thin layers over these functions, so that every benchmark builds RecSem and Draem the same
way, reads the same data with the same resize, and writes rows the same way.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from anomalib.data import Folder, ImageBatch, InferenceBatch, MVTecAD
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.datasets.image.folder import FolderDataset
from anomalib.data.datasets.image.mvtecad import MVTecADDataset
from anomalib.engine import Engine
from anomalib.metrics import AUPRO
from anomalib.models import Draem
from anomalib.models.image.draem.torch_model import DiscriminativeSubNetwork, ReconstructiveSubNetwork
from lightning.pytorch import Callback, LightningModule, Trainer
from PIL import Image
from torchmetrics.functional.classification import binary_auroc
from torchvision.transforms.v2 import Resize

from anomalib_recsem import RecSem
from anomalib_recsem.models.recsem.components.health import ReconstructionError, ReconstructionSpread, ResidualAUROC
from anomalib_recsem.models.recsem.components.resize import AntialiasedPreProcessor
from anomalib_recsem.presets import batch_sizes, model_arguments, preset_config

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
#: Real data beside the project (``$RECSEM_DATASETS``), never copied into it; tests that need it read it here.
SHARED_DATASETS = Path(os.environ.get("RECSEM_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))
#: Both models draw defect textures from the same DTD files.
DTD_IMAGES = SHARED_DATASETS / "dtd" / "images"


# --------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------


CPUINFO = Path("/proc/cpuinfo")
#: ``/proc/cpuinfo`` flags and the names :func:`device_name` gives them, widest first.
VECTOR_INSTRUCTIONS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def cpuinfo_fields() -> dict[str, str]:
    """The first core's fields of ``/proc/cpuinfo`` (``model name``, ``vendor_id``, ``flags``, ...).

    Empty if the file cannot be read.
    """
    fields: dict[str, str] = {}
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def device_name(accelerator: str = "auto") -> str:
    """The accelerator or CPU that runs the benchmark, in words.

    A CPU is named with its widest vector instructions: two machines sold under one name
    (such as "AMD EPYC") can differ there, and with them the speed of each precision and
    memory format (bfloat16 ran 10-15 times slower than float32 on one without bfloat16 instructions).
    """
    if accelerator != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    fields = cpuinfo_fields()
    cpu, flags = fields.get("model name") or platform.processor() or "CPU", fields.get("flags", "").split()
    vector = next((name for flag, name in VECTOR_INSTRUCTIONS if flag in flags), None)
    return f"{cpu} ({len(os.sched_getaffinity(0))} cores{f', {vector}' if vector else ''})"


def load_average() -> float:
    """One-minute load average (how busy the machine was)."""
    return round(os.getloadavg()[0], 2)


def now() -> str:
    """UTC timestamp for rows."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------
# Models and data
# --------------------------------------------------------------------------------------


def recsem(preset: str = "recsem_small", **overrides: Any) -> RecSem:  # noqa: ANN401
    """RecSem from a preset in ``configs/``, with overrides."""
    return RecSem(**{**model_arguments(preset), **overrides})


def engine(root: str | Path, accelerator: str = "cpu", **trainer_arguments: Any) -> Engine:  # noqa: ANN401
    """anomalib's ``Engine`` as every benchmark run uses it: one device, no logger, no progress bar.

    Args:
        root: Folder for the run's checkpoints and images (a temporary one: results are rows).
        accelerator: Lightning's accelerator.
        trainer_arguments: Anything else for the ``Trainer`` (run length, callbacks, precision).
    """
    return Engine(default_root_dir=root, accelerator=accelerator, devices=1, logger=False,
                  enable_progress_bar=False, **trainer_arguments)


def texture_label(source: str | Path | None) -> str:
    """The ``textures`` column: the folder's name, ``photos``, ``self`` or ``procedural``."""
    return "procedural" if source is None else Path(source).name


def draem_width(requested: int | None, preset: str) -> int:
    """Draem's first-block widths: ``requested``, else the RecSem preset's ``reconstruction_width``; 0 is stock."""
    return requested if requested is not None else int(model_arguments(preset)["reconstruction_width"])


def draem(image_size: int, width: int | None = None, dtd: Path = DTD_IMAGES) -> Draem:
    """anomalib's Draem with RecSem's antialiased resize and metrics, narrowed to ``width`` if given.

    ``width`` replaces both sub-networks' first-block widths (stock: 128 and 64), so Draem and
    RecSem can be compared at equal widths. The pre-processor is RecSem's, so both models see
    the same pixels in training, evaluation and export.

    Raises:
        FileNotFoundError: If ``dtd`` holds no images: Draem would otherwise download DTD.
    """
    if not any(dtd.rglob("*.jpg")):
        msg = f"Draem needs DTD textures in {dtd} (it would download them otherwise)."
        raise FileNotFoundError(msg)
    model = Draem(dtd_dir=dtd, pre_processor=AntialiasedPreProcessor((image_size, image_size)),
                  evaluator=RecSem.configure_evaluator(), visualizer=False)
    if width is not None:
        model.model.reconstructive_subnetwork = ReconstructiveSubNetwork(base_width=width)
        model.model.discriminative_subnetwork = DiscriminativeSubNetwork(in_channels=6, out_channels=2, base_width=width)
    return model


def has_masks(root: Path, category: str) -> bool:
    """Whether ``root/category`` (MVTec AD layout) has pixel masks; without ``ground_truth/`` it has image labels only."""
    return (Path(root) / category / "ground_truth").is_dir()


def _folders(root: Path, category: str) -> dict[str, Any]:
    """anomalib ``Folder`` arguments for an MVTec AD-layout category without masks: every test folder but ``good`` is a defect."""
    test = Path(root) / category / "test"
    defects = sorted(folder.name for folder in test.iterdir() if folder.is_dir() and folder.name != "good")
    if not defects:
        msg = f"{test} holds no defect folder (test/<defect type>/ beside test/good/)."
        raise FileNotFoundError(msg)
    return {"name": category, "root": Path(root) / category, "normal_dir": "train/good",
            "normal_test_dir": "test/good", "abnormal_dir": [f"test/{name}" for name in defects]}


def datamodule(root: Path = SHARED_DATASETS, category: str = "magnetic_tile", batch_size: int = 8,
               num_workers: int = 2) -> AnomalibDataModule:
    """``root/category`` in MVTec AD layout as anomalib's datamodule.

    A category with ``ground_truth/`` masks is read by ``MVTecAD``; one with image labels only
    (``train/good``, ``test/good``, ``test/<defect type>``) by ``Folder``, whose test images then
    have no masks.
    """
    if has_masks(root, category):
        return MVTecAD(root=root, category=category, train_batch_size=batch_size, eval_batch_size=32,
                       num_workers=num_workers)
    return Folder(**_folders(root, category), train_batch_size=batch_size, eval_batch_size=32,
                  num_workers=num_workers)


def dataset(root: Path, category: str, split: str, augmentations: Any = None) -> AnomalibDataset:  # noqa: ANN401
    """One split of ``root/category`` as anomalib reads it (see :func:`datamodule`)."""
    if has_masks(root, category):
        return MVTecADDataset(root=root, category=category, split=split, augmentations=augmentations)
    return FolderDataset(**_folders(root, category), split=split, augmentations=augmentations)


def parse_with_smoke(parser: Any, argv: Sequence[str] | None, **defaults: Any) -> Any:  # noqa: ANN401
    """Parse ``argv``; with ``--smoke``, ``defaults`` (a run of seconds) first, then generated data.

    Flags given on the command line still win over the smoke defaults. ``--image-size``,
    ``--batch-size`` and ``--epochs``, where a script has them and they are not given, come
    from ``--preset``'s YAML (its model's ``image_size``, data's ``train_batch_size`` and
    trainer's ``max_epochs``), so that a preset is written down once.
    """
    if "--smoke" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    from_preset = {"image_size": model_arguments(args.preset)["image_size"],
                   "batch_size": batch_sizes(args.preset)[0],
                   "epochs": preset_config(args.preset)["trainer"]["max_epochs"]}
    for name, value in from_preset.items():
        if hasattr(args, name) and getattr(args, name) is None:
            setattr(args, name, value)
    if args.smoke:
        args.root, args.textures = smoke_data(args.output / "data")
    return args


def smoke_data(folder: Path) -> tuple[Path, Path]:
    """A generated MVTec AD-layout category ``dummy`` and a folder of JPEG textures, for smoke runs.

    Returns:
        tuple[Path, Path]: The dataset root and the texture folder.
    """
    from PIL import Image  # noqa: PLC0415

    from anomalib_recsem.data.toy_mvtec import write_mvtec_dataset  # noqa: PLC0415

    textures = folder / "textures"
    textures.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(0)
    for index in range(4):
        Image.fromarray(generator.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(textures / f"{index}.jpg")
    return write_mvtec_dataset(folder / "mvtec", num_train=8, num_test_good=4, num_test_defective=4), textures


class EvaluationSet:
    """Images of a split at the model's size (antialiased resize), their labels and masks, held in memory.

    Args:
        root: MVTec AD-layout root.
        category: Category folder (with or without ``ground_truth/``, see :func:`datamodule`).
        image_size: Side the images are resized to.
        stride: Keep every ``stride``-th image (in the dataset's sorted order, so every
            defect type keeps its share).
        split: ``"test"``, or ``"train"`` (defect-free images, without masks in the files).
    """

    def __init__(self, root: Path, category: str, image_size: int, stride: int = 1, split: str = "test") -> None:
        images_of = dataset(root, category, split, Resize((image_size, image_size), antialias=True))
        loader = torch.utils.data.DataLoader(images_of, batch_size=32, collate_fn=images_of.collate_fn)
        images, labels, masks = [], [], []
        for batch in loader:
            images.append(batch.image)
            labels.append(batch.gt_label)
            if batch.gt_mask is not None:
                masks.append(batch.gt_mask.reshape(batch.image.shape[0], image_size, image_size))
        self.images = torch.cat(images)[::stride].contiguous()
        self.labels = torch.cat(labels).long()[::stride]
        #: ``(N, H, W)`` pixel labels; None for a dataset with image labels only.
        self.masks = torch.cat(masks).bool()[::stride].contiguous() if masks else None
        #: File of each image.
        self.image_paths: list[str] = list(images_of.samples.image_path)[::stride]
        #: Folder of each image: ``good`` or the defect type.
        self.defect_types: list[str] = [Path(path).parent.name for path in self.image_paths]

    @cached_property
    def stored_sides(self) -> torch.Tensor:
        """``(N,)`` side of each image as stored, before the resize: the geometric mean of width and height.

        Where sizes vary, the resize shrinks some images more. Read on first use (PIL reads
        only each file's header), so evaluations that never ask open no file again.
        """
        return torch.tensor([_stored_side(path) for path in self.image_paths])


def _stored_side(path: str) -> float:
    """Geometric mean of the width and height of the image file at ``path``."""
    with Image.open(path) as image:
        return math.sqrt(image.width * image.height)


def predict(module: LightningModule, images: torch.Tensor,
            stand_in: torch.Tensor | None = None) -> tuple[Any, torch.Tensor]:
    """Eval-mode prediction and the reconstruction behind it, for RecSem or Draem, in one pass.

    Args:
        module: RecSem or anomalib's Draem.
        images: Images in ``[0, 1]``, ``(B, C, H, W)``.
        stand_in: Images in ``[0, 1]`` that the discriminator gets in place of the
            reconstruction (returned as the reconstruction), ``(B, C, H, W)``; ``None``: the
            model's own reconstruction.
    """
    network = module.model
    if isinstance(module, RecSem):
        if stand_in is None:
            return network.detect(images)
        return network.predict(network.discriminate(network.normalize(stand_in), images)), stand_in
    reconstruction = network.reconstructive_subnetwork(images) if stand_in is None else stand_in
    logits = network.discriminative_subnetwork(torch.cat([images, reconstruction], dim=1))
    anomaly_map = torch.softmax(logits, dim=1)[:, 1]
    return InferenceBatch(pred_score=anomaly_map.flatten(1).amax(1), anomaly_map=anomaly_map), reconstruction


@torch.no_grad()
def _predicted_batches(module: LightningModule, images: torch.Tensor, batch_size: int,
                       stand_in: torch.Tensor | None = None) -> Iterator[tuple[slice, Any, torch.Tensor]]:
    """``(rows, prediction, reconstruction)`` per batch of ``images``, in eval mode on the module's device.

    ``stand_in``: see :func:`predict`. The module's mode is restored when the loop ends.
    """
    was_training = module.training
    module.eval()
    try:
        for start in range(0, len(images), batch_size):
            rows = slice(start, start + batch_size)
            yield rows, *predict(module, images[rows].to(module.device),
                                 None if stand_in is None else stand_in[rows].to(module.device))
    finally:
        module.train(was_training)


@torch.no_grad()
def evaluate(module: LightningModule, data: EvaluationSet, batch_size: int = 32) -> dict[str, float]:
    """Image AUROC, pixel AUROC and AUPRO (FPR 0.3) and reconstruction health of ``module`` on ``data``.

    The networks run in eval mode on the module's device; the module's mode is restored.
    """
    scores, maps = [], []
    error, spread, residual = ReconstructionError(), ReconstructionSpread(), ResidualAUROC()
    for rows, output, reconstruction in _predicted_batches(module, data.images, batch_size):
        images, labels = data.images[rows], data.labels[rows]
        scores.append(output.pred_score.float().cpu())
        maps.append(output.anomaly_map.float().cpu().reshape(-1, *images.shape[-2:]))
        reconstruction = reconstruction.float().cpu()
        error.update(images, reconstruction, labels)
        spread.update(images, reconstruction)
        if data.masks is not None:
            residual.update(images, reconstruction, data.masks[rows])
    score, anomaly_map = torch.cat(scores), torch.cat(maps)
    metrics = {
        "image_AUROC": auroc(score, data.labels),
        "pixel_AUROC": math.nan,
        "pixel_AUPRO": math.nan,
        "reconstruction_error": float(error.compute()),
        "reconstruction_spread": float(spread.compute()),
        "residual_pixel_AUROC": math.nan,
    }
    if data.masks is not None:  # pixel metrics need pixel labels
        aupro = AUPRO(fields=["anomaly_map", "gt_mask"], fpr_limit=0.3, strict=False)
        aupro.update(ImageBatch(image=data.images[:1].expand(len(score), -1, -1, -1), anomaly_map=anomaly_map,
                                gt_mask=data.masks))
        metrics |= {"pixel_AUROC": auroc(anomaly_map.flatten(), data.masks.flatten()),
                    "pixel_AUPRO": float(aupro.compute()), "residual_pixel_AUROC": float(residual.compute())}
    return metrics


class Predictions(NamedTuple):
    """What a model makes of ``N`` images, on the CPU in float32."""

    scores: torch.Tensor
    """Image scores ``(N,)``."""
    maps: torch.Tensor
    """Anomaly maps ``(N, H, W)``."""
    reconstructions: torch.Tensor
    """The reconstructions behind them (or the stand-in), ``(N, C, H, W)``."""


def predictions(module: LightningModule, images: torch.Tensor, batch_size: int = 32,
                stand_in: torch.Tensor | None = None) -> Predictions:
    """Eval-mode predictions of ``module`` for ``images`` ``(N, C, H, W)``.

    ``stand_in``: images the discriminator gets in place of the reconstruction (see :func:`predict`).
    """
    scores, maps, reconstructions = [], [], []
    for _, output, reconstruction in _predicted_batches(module, images, batch_size, stand_in):
        scores.append(output.pred_score.float().cpu().flatten())
        maps.append(output.anomaly_map.float().cpu().reshape(-1, *images.shape[-2:]))
        reconstructions.append(reconstruction.float().cpu())
    return Predictions(torch.cat(scores), torch.cat(maps), torch.cat(reconstructions))


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Binary AUROC of any real-valued ``scores``, NaN when one class is missing (torchmetrics would return 0).

    torchmetrics takes scores outside ``[0, 1]`` for logits and applies a sigmoid, which in
    float32 makes every score above about 17, or below about -88, the same: such scores are
    ranked first (ties kept) and the ranks scaled to ``[0, 1]``, which leaves the AUROC as it is.
    """
    if labels.min() == labels.max():
        return math.nan
    if scores.min() < 0 or scores.max() > 1:
        distinct, rank = torch.unique(scores.double(), return_inverse=True)
        scores = rank.double() / max(1, len(distinct) - 1)
    return float(binary_auroc(scores, labels.long()))


def hardest(scores: torch.Tensor, normal: torch.Tensor, count: int = 3) -> torch.Tensor:
    """Indices of the ``count`` defect-free images scored highest, then of the defective ones scored lowest.

    ``normal``: bool ``(N,)``, True for the defect-free images.
    """
    good, defective = normal.nonzero().flatten(), (~normal).nonzero().flatten()
    return torch.cat([good[scores[good].argsort(descending=True)[:count]],
                      defective[scores[defective].argsort()[:count]]])


def images_by_defect_type(data: EvaluationSet) -> list[tuple[str, torch.Tensor]]:
    """Each defect type of ``data`` (every test folder but ``good``), sorted, with the bool ``(N,)`` choosing its images."""
    return [(name, torch.tensor([kind == name for kind in data.defect_types]))
            for name in sorted(set(data.defect_types) - {"good"})]


def evaluate_by_defect_type(data: EvaluationSet, score: torch.Tensor,
                            anomaly_map: torch.Tensor) -> list[dict[str, Any]]:
    """Per defect type: image AUROC against the defect-free images, pixel AUROC within that type, median score.

    A pooled pixel AUROC is dominated by the types with the largest masks; this shows which
    defects a model finds and which it misses. The defect-free test images get a row of
    their own (their median score).

    Args:
        data: The images scored.
        score: Their image scores ``(N,)`` (:func:`predictions`).
        anomaly_map: Their anomaly maps ``(N, H, W)``.
    """
    normal = torch.tensor([name == "good" for name in data.defect_types])
    rows: list[dict[str, Any]] = [{"defect_type": "good", "images": int(normal.sum()), "image_AUROC": math.nan,
                                   "pixel_AUROC": math.nan, "mask_share": 0.0,
                                   "median_score": float(score[normal].median()) if normal.any() else math.nan}]
    for name, chosen in images_by_defect_type(data):
        pair = chosen | normal
        masks = data.masks[chosen] if data.masks is not None else None
        rows.append({
            "defect_type": name, "images": int(chosen.sum()),
            "image_AUROC": auroc(score[pair], chosen[pair]),
            "pixel_AUROC": auroc(anomaly_map[chosen].flatten(), masks.flatten()) if masks is not None else math.nan,
            "mask_share": float(masks.float().mean()) if masks is not None else math.nan,
            "median_score": float(score[chosen].median()),
        })
    return rows


def stored_size_halves(data: EvaluationSet) -> list[tuple[str, torch.Tensor]]:
    """``("smaller", chosen)`` and ``("larger", chosen)``: the images split at the median stored side.

    The smaller half keeps the median. None when every image has the same size.
    """
    sides = data.stored_sides
    if sides.min() == sides.max():
        return []
    median = sides.median()
    return [("smaller", sides <= median), ("larger", sides > median)]


def evaluate_by_stored_size(data: EvaluationSet, score: torch.Tensor) -> list[dict[str, Any]]:
    """Image AUROC within the smaller and the larger half of the images as stored, overall and per defect type.

    Where image sizes vary, a resize to one side shrinks the larger images more, and a thin
    defect may vanish in them. Each half is split at the median stored side (the smaller half
    keeps the median) and compared only with the defect-free images of the same half, so a
    model that scores small images higher across the board gains nothing.

    Args:
        data: The images scored.
        score: Their image scores ``(N,)`` (:func:`predictions`).

    Returns:
        list[dict[str, Any]]: For each half, a row for all defect types together and one per
        type, with ``half``, its stored sides ``sides`` (``"min-max"`` px), ``defect_type``,
        ``images`` (defective), ``good_images`` and ``image_AUROC``. Empty when every image
        has the same size.
    """
    sides = data.stored_sides
    normal = torch.tensor([name == "good" for name in data.defect_types])
    defective = [("all", ~normal), *images_by_defect_type(data)]
    rows: list[dict[str, Any]] = []
    for half, inside in stored_size_halves(data):
        span = f"{sides[inside].min():.0f}-{sides[inside].max():.0f}"
        for name, chosen in defective:
            pair = inside & (chosen | normal)
            rows.append({"half": half, "sides": span, "defect_type": name, "images": int((inside & chosen).sum()),
                         "good_images": int((inside & normal).sum()), "image_AUROC": auroc(score[pair], chosen[pair])})
    return rows


# --------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file (none if it does not exist)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """Write ``rows`` atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".partial")
    with os.fdopen(handle, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({key: _cell(row.get(key, "")) for key in columns} for row in rows)
    os.chmod(temporary, 0o644)  # mkstemp makes it private
    Path(temporary).replace(path)


def append_rows(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """Add rows to a CSV file, keeping the rows already there."""
    write_rows(path, [*read_rows(path), *rows], columns)


def _cell(value: Any) -> Any:  # noqa: ANN401
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return value


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a Markdown table: ``header``, its rule, then one line per row (cells as ``str``).

    Example:
        >>> markdown_table(["model", "AUROC"], [["recsem", "0.80"]])
        ['| model | AUROC |', '|---|---|', '| recsem | 0.80 |']
    """
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header),
            *(f"| {' | '.join(str(cell) for cell in row)} |" for row in rows)]


# --------------------------------------------------------------------------------------
# Timing a Lightning run
# --------------------------------------------------------------------------------------


class StepClock(Callback):
    """Wall-clock seconds of training (set-up included, evaluations excluded), resumable.

    Other callbacks pause it around their own work with :meth:`pause`.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._since: float | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Start counting before the model's own set-up (data caching counts as training)."""
        if stage == "fit":
            self._since = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds so far."""
        return self.seconds + (time.perf_counter() - self._since if self._since is not None else 0.0)

    def pause(self) -> None:
        """Stop counting."""
        self.seconds = self.elapsed()
        self._since = None

    def resume(self) -> None:
        """Count again."""
        self._since = time.perf_counter()

    def state_dict(self) -> dict[str, float]:
        """Seconds counted, for checkpoints."""
        return {"seconds": self.elapsed()}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        """Continue counting from a checkpoint."""
        self.seconds = state_dict["seconds"]
