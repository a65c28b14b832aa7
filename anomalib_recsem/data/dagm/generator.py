"""Write small DAGM-2007-like datasets for tests and offline demos.

The real DAGM 2007 data cannot be downloaded automatically, so this module
writes a stand-in with the exact on-disk layout read by
:class:`anomalib_recsem.data.dagm.DAGM`::

    <root>/ClassN/{Train,Test}/NNNN.PNG
    <root>/ClassN/{Train,Test}/Label/Labels.txt
    <root>/ClassN/{Train,Test}/Label/NNNN_label.PNG

Images are 8-bit grayscale procedural textures, one style per class (brushed
fibres, fine grain, blotches, weave, speckle, ripples). Defects are painted by
processes unrelated to the DRAEM/Perlin synthesis used during training, so a
model cannot recognise them merely as "its own" synthetic anomalies:

* ``scratch``: thin random polylines, darker or brighter than the surface;
* ``spot``: a small cluster of dark or bright discs;
* ``dent``: an elliptical depression shaded by a directional light;
* ``stain``: an irregular, low-contrast blob that also dulls the texture.

Masks are 0/255 PNGs; by default they are the exact defect region, or, with
``elliptical_labels=True``, DAGM-like weak ellipses covering the defect.

Example:
    >>> from anomalib_recsem.data.dagm.generator import write_dagm_dataset
    >>> root = write_dagm_dataset("/tmp/dagm", categories=("Class1",), image_size=256)
    >>> sorted(p.name for p in (root / "Class1").iterdir())
    ['.written_by_anomalib_recsem', 'Test', 'Train']
"""

import logging
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from .dataset import DAGM_CATEGORIES
from .labels import LABEL_DIRNAME, LABELS_FILENAME, TEST_DIRNAME, TRAIN_DIRNAME

logger = logging.getLogger(__name__)

DEFECT_TYPES: tuple[str, ...] = ("scratch", "spot", "dent", "stain")
"""Defect kinds :func:`add_defect` can paint."""

MARKER = ".written_by_anomalib_recsem"
"""File in each category folder :func:`write_dagm_dataset` writes: only such folders are replaced."""


# One texture style (with style parameters) per DAGM class so that classes look different.
_CATEGORY_TEXTURES: dict[str, tuple[str, dict[str, float]]] = {
    "Class1": ("blotchy", {"coarse": 1.0}),
    "Class2": ("grain", {"sigma": 0.8}),
    "Class3": ("brushed", {"angle": 0.0, "length": 0.05}),
    "Class4": ("woven", {"period": 0.045, "angle": 0.0}),
    "Class5": ("speckle", {"density": 0.01}),
    "Class6": ("ripple", {"period": 0.06}),
    "Class7": ("brushed", {"angle": 50.0, "length": 0.1}),
    "Class8": ("blotchy", {"coarse": 0.4}),
    "Class9": ("woven", {"period": 0.07, "angle": 30.0}),
    "Class10": ("grain", {"sigma": 1.8}),
}

# Each class favours one defect kind, as each DAGM class has its own defect type.
_CATEGORY_DEFECTS: dict[str, str] = {
    category: DEFECT_TYPES[index % len(DEFECT_TYPES)] for index, category in enumerate(DAGM_CATEGORIES)
}
_PRIMARY_DEFECT_PROBABILITY = 0.55

_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]


# --------------------------------------------------------------------------- textures


def _standardize(field: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-std copy of a field (constant fields stay zero)."""
    field = field.astype(np.float32)
    field -= field.mean()
    std = float(field.std())
    return field / std if std > 1e-8 else field  # noqa: PLR2004


def _blur(field: np.ndarray, sigma_x: float, sigma_y: float | None = None) -> np.ndarray:
    """Gaussian blur with OpenCV (much faster than pure numpy at 512 px)."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    return cv2.GaussianBlur(field, (0, 0), sigmaX=max(sigma_x, 0.1), sigmaY=max(sigma_y, 0.1))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field from a coarse grid upsampled bicubically."""
    cells = max(2, cells)
    grid = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    up = cv2.resize(grid, (size + 3 * size // cells, size + 3 * size // cells), interpolation=cv2.INTER_CUBIC)
    offset = size // cells
    return up[offset : offset + size, offset : offset + size]


def _rotate(field: np.ndarray, angle: float) -> np.ndarray:
    """Rotate a square field about its centre with reflected borders."""
    size = field.shape[0]
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    return cv2.warpAffine(field, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _texture_brushed(rng: np.random.Generator, size: int, angle: float, length: float) -> np.ndarray:
    noise = rng.standard_normal((size, size)).astype(np.float32)
    # Blurring along one axis only turns white noise into parallel fibres.
    fibres = _standardize(_blur(noise, sigma_x=max(length * size, 1.5), sigma_y=0.6))
    fibres = _rotate(fibres, angle + rng.uniform(-4.0, 4.0))
    return fibres + 0.35 * _standardize(_smooth_noise(rng, size, 3))


def _texture_grain(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    scale = size / 512
    fine = _standardize(_blur(rng.standard_normal((size, size)).astype(np.float32), sigma * max(scale, 0.5)))
    medium = _standardize(_blur(rng.standard_normal((size, size)).astype(np.float32), 4.0 * sigma * scale + 0.5))
    return fine + 0.5 * medium + 0.3 * _standardize(_smooth_noise(rng, size, 4))


def _texture_blotchy(rng: np.random.Generator, size: int, coarse: float) -> np.ndarray:
    base = max(2, round(4 / coarse))
    field = np.zeros((size, size), dtype=np.float32)
    for octave, weight in enumerate((1.0, 0.55, 0.3)):
        field += weight * _standardize(_smooth_noise(rng, size, base * 2**octave))
    grain = _standardize(_blur(rng.standard_normal((size, size)).astype(np.float32), 0.7))
    return field + 0.35 * grain


def _texture_woven(rng: np.random.Generator, size: int, period: float, angle: float) -> np.ndarray:
    period_px = max(period * size, 3.0)
    coords = np.arange(size, dtype=np.float32)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    # Slow warping makes the weave look like cloth rather than a perfect grid.
    warp = 0.25 * period_px * _standardize(_smooth_noise(rng, size, 3))
    theta = math.radians(angle + rng.uniform(-3.0, 3.0))
    u = (x * math.cos(theta) + y * math.sin(theta) + warp) / period_px * 2 * math.pi + rng.uniform(0, 2 * math.pi)
    v = (-x * math.sin(theta) + y * math.cos(theta) + warp) / period_px * 2 * math.pi + rng.uniform(0, 2 * math.pi)
    over = np.sign(np.sin(u / 2) * np.sin(v / 2))
    weave = np.where(over > 0, np.cos(v) ** 2, np.cos(u) ** 2).astype(np.float32)
    weave = _blur(weave, 0.5)
    noise = _standardize(_blur(rng.standard_normal((size, size)).astype(np.float32), 0.8))
    return _standardize(weave) + 0.4 * noise


def _texture_speckle(rng: np.random.Generator, size: int, density: float) -> np.ndarray:
    scale = max(size / 512, 0.25)
    dots = (rng.random((size, size)) < density).astype(np.float32) * rng.choice([-1.0, 1.0], (size, size))
    dots = _standardize(_blur(dots.astype(np.float32), 1.2 * scale + 0.3))
    background = _standardize(_blur(rng.standard_normal((size, size)).astype(np.float32), 0.6))
    return dots + 0.5 * background + 0.4 * _standardize(_smooth_noise(rng, size, 5))


def _texture_ripple(rng: np.random.Generator, size: int, period: float) -> np.ndarray:
    period_px = max(period * size, 4.0)
    coords = np.arange(size, dtype=np.float32)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    bend = 1.2 * period_px * _standardize(_smooth_noise(rng, size, 2))
    phase = (y + bend + 0.2 * x) / period_px * 2 * math.pi + rng.uniform(0, 2 * math.pi)
    noise = _standardize(_blur(rng.standard_normal((size, size)).astype(np.float32), 0.8))
    return _standardize(np.sin(phase).astype(np.float32)) + 0.45 * noise


_TEXTURES: dict[str, Callable[..., np.ndarray]] = {
    "brushed": _texture_brushed,
    "grain": _texture_grain,
    "blotchy": _texture_blotchy,
    "woven": _texture_woven,
    "speckle": _texture_speckle,
    "ripple": _texture_ripple,
}


def make_texture(category: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render a defect-free surface of a category.

    Args:
        category: DAGM class name, one of ``Class1`` ... ``Class10``; it picks
            the texture style.
        size: Side length in pixels.
        rng: Random generator; the same state gives the same image.

    Returns:
        np.ndarray: ``float32`` image of shape ``(size, size)`` in gray levels,
        mean about 128 and std about 24 (not yet clipped or quantised).

    Raises:
        ValueError: If ``category`` is not a DAGM class.
    """
    if category not in _CATEGORY_TEXTURES:
        msg = f"Invalid category {category!r}: category must be one of {', '.join(DAGM_CATEGORIES)}."
        raise ValueError(msg)
    style, params = _CATEGORY_TEXTURES[category]
    field = _standardize(_TEXTURES[style](rng, size, **params))
    # Small per-image brightness/contrast changes, as between real captures.
    mean = 128.0 + rng.uniform(-12.0, 12.0)
    std = 24.0 * rng.uniform(0.85, 1.15)
    return (mean + std * field).astype(np.float32)


# --------------------------------------------------------------------------- defects


def _polyline(rng: np.random.Generator, size: int, start: np.ndarray, direction: float) -> np.ndarray:
    """Random smooth-ish polyline from ``start``, as fixed-point (shift 4) points inside the image."""
    length = rng.uniform(0.2, 0.5) * size
    num_segments = int(rng.integers(6, 14))
    step = length / num_segments
    curvature = rng.normal(0.0, 0.12)
    point = start.copy()
    points = [point.copy()]
    for _ in range(num_segments):
        direction += curvature + rng.normal(0.0, 0.18)
        point = point + step * np.array([math.cos(direction), math.sin(direction)])
        point = np.clip(point, 1, size - 2)
        points.append(point.copy())
    # Sub-pixel precision (shift=4) keeps short segments smooth at small sizes.
    return np.round(np.array(points) * 16).astype(np.int32)


def _defect_scratch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    canvas = np.zeros((size, size), dtype=np.uint8)
    thickness = max(1, round(rng.uniform(1.0, 2.5) * size / 256))
    start = rng.uniform(0.15 * size, 0.85 * size, 2)
    direction = rng.uniform(0, 2 * math.pi)
    # A second, nearly parallel stroke sometimes follows the first, as from one scraping contact.
    for _ in range(int(rng.integers(1, 3))):
        stroke_start = np.clip(start + rng.normal(0.0, 0.02 * size, 2), 1, size - 2)
        stroke = _polyline(rng, size, stroke_start, direction + rng.normal(0.0, 0.1))
        cv2.polylines(canvas, [stroke], False, 255, thickness, cv2.LINE_AA, shift=4)
    alpha = canvas.astype(np.float32) / 255
    sign = rng.choice([-1.0, 1.0])
    image += sign * rng.uniform(45.0, 75.0) * alpha
    # A low threshold keeps the anti-aliased fringe, which is visibly changed too, in the mask.
    return alpha > 0.1  # noqa: PLR2004


def _disc_alpha(size: int, centre: np.ndarray, radius: float) -> np.ndarray:
    coords = np.arange(size, dtype=np.float32)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    distance = np.hypot(x - centre[0], y - centre[1])
    # A one-pixel ramp avoids jagged, overly easy-to-spot edges.
    return np.clip(radius - distance + 0.5, 0.0, 1.0)


def _defect_spot(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    margin = 0.1 * size
    centre = rng.uniform(margin, size - margin, 2)
    alpha = np.zeros((size, size), dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        radius = max(rng.uniform(0.015, 0.04) * size, 1.5)
        offset = rng.normal(0.0, 0.03 * size, 2)
        alpha = np.maximum(alpha, _disc_alpha(size, centre + offset, radius))
    sign = rng.choice([-1.0, 1.0])
    image += sign * rng.uniform(40.0, 70.0) * alpha
    return alpha > 0.5  # noqa: PLR2004


def _ellipse_coordinates(size: int, centre: np.ndarray, axes: tuple[float, float], angle: float) -> np.ndarray:
    """Squared normalised radius ``(u/a)^2 + (v/b)^2`` of every pixel."""
    coords = np.arange(size, dtype=np.float32)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    cos, sin = math.cos(angle), math.sin(angle)
    u = (x - centre[0]) * cos + (y - centre[1]) * sin
    v = -(x - centre[0]) * sin + (y - centre[1]) * cos
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2


def _defect_dent(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    margin = 0.15 * size
    centre = rng.uniform(margin, size - margin, 2)
    axes = (max(rng.uniform(0.04, 0.1) * size, 2.5), max(rng.uniform(0.03, 0.07) * size, 2.0))
    q = _ellipse_coordinates(size, centre, axes, rng.uniform(0, math.pi))
    depth = np.clip(1.0 - q, 0.0, None) ** 2
    # Lambert-like shading of the depression: one rim lit, the other in shadow.
    grad_y, grad_x = np.gradient(depth)
    light = rng.uniform(0, 2 * math.pi)
    shading = grad_x * math.cos(light) + grad_y * math.sin(light)
    peak = float(np.abs(shading).max())
    if peak > 0:
        shading /= peak
    image += rng.uniform(40.0, 65.0) * shading - rng.uniform(10.0, 25.0) * depth
    return q < 1.0


def _defect_stain(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    margin = 0.2 * size
    centre = rng.uniform(margin, size - margin, 2)
    coords = np.arange(size, dtype=np.float32)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    field = np.zeros((size, size), dtype=np.float32)
    # A few overlapping anisotropic bumps give a lobed, irregular outline.
    for _ in range(int(rng.integers(3, 7))):
        bump_centre = centre + rng.normal(0.0, 0.04 * size, 2)
        sx, sy = rng.uniform(0.025, 0.06, 2) * size
        field += np.exp(-(((x - bump_centre[0]) / sx) ** 2 + ((y - bump_centre[1]) / sy) ** 2) / 2)
    level = 0.5 * float(field.max())
    alpha = np.clip((field - level) / (0.15 * level) + 0.5, 0.0, 1.0)
    local_mean = float(image[alpha > 0.5].mean()) if (alpha > 0.5).any() else float(image.mean())  # noqa: PLR2004
    # Stains dull the texture and shift its tone only slightly: low contrast by design.
    dulled = local_mean + 0.6 * (image - local_mean)
    sign = rng.choice([-1.0, 1.0])
    image[:] = (1 - alpha) * image + alpha * (dulled + sign * rng.uniform(18.0, 30.0))
    return alpha > 0.1  # noqa: PLR2004


_DEFECTS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "scratch": _defect_scratch,
    "spot": _defect_spot,
    "dent": _defect_dent,
    "stain": _defect_stain,
}


def add_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Paint one defect into ``image`` in place.

    Args:
        image: ``float32`` square image in gray levels (as from
            :func:`make_texture`); modified in place.
        kind: One of :data:`DEFECT_TYPES`.
        rng: Random generator.

    Returns:
        np.ndarray: Boolean mask of the defect region.

    Raises:
        ValueError: If ``kind`` is unknown.
    """
    if kind not in _DEFECTS:
        msg = f"Invalid defect type {kind!r}: must be one of {', '.join(DEFECT_TYPES)}."
        raise ValueError(msg)
    mask = _DEFECTS[kind](image, rng)
    if not mask.any():
        # Tiny images can round a defect away; mark at least its strongest pixel.
        logger.debug("Defect %s produced an empty mask; marking a single pixel.", kind)
        mask = np.zeros_like(mask)
        mask[image.shape[0] // 2, image.shape[1] // 2] = True
    return mask


def elliptical_label(mask: np.ndarray, margin: float = 2.0) -> np.ndarray:
    """Weak DAGM-style label: a filled ellipse covering ``mask``.

    The ellipse is aligned with the principal axes of the defect pixels and
    scaled by sqrt(2) from their bounding box in that frame, which guarantees
    that every defect pixel is inside.

    Args:
        mask: Boolean defect mask.
        margin: Extra pixels added to both semi-axes.

    Returns:
        np.ndarray: Boolean mask of the ellipse (clipped to the image).
    """
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return mask.copy()
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    centre = points.mean(axis=0)
    centred = points - centre
    if xs.size > 1:
        _, vectors = np.linalg.eigh(np.cov(centred.T))
        major = vectors[:, -1]
    else:
        major = np.array([1.0, 0.0])
    minor = np.array([-major[1], major[0]])
    u = centred @ major
    v = centred @ minor
    # Centre the box in the principal frame so the sqrt(2) bound holds on both sides.
    u_mid, v_mid = (u.max() + u.min()) / 2, (v.max() + v.min()) / 2
    centre = centre + u_mid * major + v_mid * minor
    semi_u = math.sqrt(2) * (u.max() - u.min()) / 2 + margin
    semi_v = math.sqrt(2) * (v.max() - v.min()) / 2 + margin
    canvas = np.zeros(mask.shape, dtype=np.uint8)
    angle = math.degrees(math.atan2(major[1], major[0]))
    cv2.ellipse(
        canvas,
        (round(centre[0] * 16), round(centre[1] * 16)),
        (math.ceil(semi_u * 16), math.ceil(semi_v * 16)),
        angle,
        0,
        360,
        255,
        -1,
        cv2.LINE_8,
        shift=4,
    )
    return (canvas > 0) | mask


# --------------------------------------------------------------------------- writing


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write an 8-bit grayscale PNG (explicit format: DAGM uses the ``.PNG`` suffix)."""
    ok, encoded = cv2.imencode(".png", array, _PNG_PARAMS)
    if not ok:
        msg = f"Could not encode PNG for {path}"
        raise OSError(msg)
    path.write_bytes(encoded.tobytes())


def _labels_row(image_id: str, image_name: str, label_name: str | None) -> str:
    """One ``Labels.txt`` row in the exact DAGM format (trailing TAB when unlabelled)."""
    if label_name is None:
        return f"{image_id}\t0\t{image_name}\t0\t0\t\n"
    return f"{image_id}\t1\t{image_name}\t0\t{label_name}\n"


def _pick_defect(category: str, defect_types: Sequence[str], rng: np.random.Generator) -> str:
    primary = _CATEGORY_DEFECTS[category]
    if primary in defect_types and (len(defect_types) == 1 or rng.random() < _PRIMARY_DEFECT_PROBABILITY):
        return primary
    others = [kind for kind in defect_types if kind != primary] or list(defect_types)
    return str(others[int(rng.integers(len(others)))])


def _write_split(
    split_dir: Path,
    category: str,
    ids: list[int],
    defective_ids: set[int],
    id_width: int,
    image_size: int,
    seed: int,
    defect_types: Sequence[str],
    elliptical_labels: bool,
) -> None:
    label_dir = split_dir / LABEL_DIRNAME
    label_dir.mkdir(parents=True, exist_ok=True)
    category_index = DAGM_CATEGORIES.index(category)
    rows = ["1\n"]
    for number in sorted(ids):
        image_id = f"{number:0{id_width}d}"
        image_name = f"{image_id}.PNG"
        # Seeding per image id makes each image independent of counts and order.
        rng = np.random.default_rng([seed, category_index, number])
        image = make_texture(category, image_size, rng)
        label_name = None
        if number in defective_ids:
            mask = add_defect(image, _pick_defect(category, defect_types, rng), rng)
            if elliptical_labels:
                mask = elliptical_label(mask, margin=max(1.0, 2.0 * image_size / 256))
            label_name = f"{image_id}_label.PNG"
            _write_png(label_dir / label_name, mask.astype(np.uint8) * 255)
        _write_png(split_dir / image_name, np.clip(np.rint(image), 0, 255).astype(np.uint8))
        rows.append(_labels_row(image_id, image_name, label_name))
    (label_dir / LABELS_FILENAME).write_text("".join(rows), encoding="utf-8", newline="")


def write_dagm_dataset(
    root: str | Path,
    categories: Sequence[str] = ("Class1",),
    num_train: int = 16,
    num_test_normal: int = 8,
    num_test_defective: int = 8,
    num_train_defective: int = 2,
    image_size: int = 512,
    seed: int = 0,
    with_train: bool = True,
    elliptical_labels: bool = False,
    defect_types: Sequence[str] = DEFECT_TYPES,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic dataset in the exact DAGM 2007 layout.

    Image ids are unique within a class and shuffled between ``Train`` and
    ``Test`` (as in DAGM, where e.g. ``Train`` starts at ``0576``).

    Args:
        root: Dataset root; ``<root>/<category>`` folders are created.
        categories: DAGM class names (``Class1`` ... ``Class10``); each has its
            own texture style and favoured defect type.
        num_train: Defect-free ``Train`` images per class.
        num_test_normal: Defect-free ``Test`` images per class.
        num_test_defective: Defective ``Test`` images per class.
        num_train_defective: Defective ``Train`` images per class (DAGM's Train
            folders contain defects too).
        image_size: Side length of the square images (DAGM uses 512).
        seed: Seed; the same arguments always write the same files.
        with_train: Write ``Train`` folders; without them the datamodule splits
            the normal ``Test`` images.
        elliptical_labels: Write weak elliptical masks covering each defect
            (like DAGM) instead of exact defect masks.
        defect_types: Defect kinds to draw from (subset of
            :data:`DEFECT_TYPES`).
        overwrite: Replace existing ``<root>/<category>`` folders that this function
            wrote (they hold the file :data:`MARKER`); otherwise a non-empty one is an
            error. A folder without the marker (real DAGM data, say) is never deleted.

    Returns:
        Path: ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If a category, defect type, count or size is invalid.
        FileExistsError: If a category folder exists, is not empty and
            ``overwrite`` is ``False`` or the folder was not written here.
    """
    root = Path(root)
    categories = [categories] if isinstance(categories, str) else list(categories)
    for category in categories:
        if category not in DAGM_CATEGORIES:
            msg = f"Invalid category {category!r} in categories: must be one of {', '.join(DAGM_CATEGORIES)}."
            raise ValueError(msg)
    defect_types = list(defect_types)
    if not defect_types or any(kind not in DEFECT_TYPES for kind in defect_types):
        msg = f"Invalid defect_types {defect_types!r}: must be a non-empty subset of {', '.join(DEFECT_TYPES)}."
        raise ValueError(msg)
    counts = {
        "num_train": num_train,
        "num_test_normal": num_test_normal,
        "num_test_defective": num_test_defective,
        "num_train_defective": num_train_defective,
    }
    for name, value in counts.items():
        if value < 0:
            msg = f"Invalid {name} {value!r}: must be >= 0."
            raise ValueError(msg)
    if image_size < 16:  # noqa: PLR2004
        msg = f"Invalid image_size {image_size!r}: must be >= 16."
        raise ValueError(msg)

    # Every folder is checked before any is replaced.
    for category in categories:
        class_dir = root / category
        if class_dir.exists() and any(class_dir.iterdir()):
            if not (class_dir / MARKER).is_file():
                msg = (f"{class_dir} already exists, is not empty and holds no {MARKER} file: write_dagm_dataset "
                       "did not write it (or wrote it before it marked its folders), so it is left as it is. Choose "
                       "another root, or move that folder away (an earlier demo's data can be deleted).")
                raise FileExistsError(msg)
            if not overwrite:
                msg = f"{class_dir} already exists and is not empty; pass overwrite=True to replace it."
                raise FileExistsError(msg)
    for category in categories:
        class_dir = root / category
        if class_dir.exists():
            shutil.rmtree(class_dir)

        class_dir.mkdir(parents=True, exist_ok=True)
        (class_dir / MARKER).touch()  # first, so that an interrupted write can be replaced too
        num_train_total = (num_train + num_train_defective) if with_train else 0
        num_test_total = num_test_normal + num_test_defective
        total = num_train_total + num_test_total
        id_width = max(4, len(str(total)))
        category_rng = np.random.default_rng([seed, DAGM_CATEGORIES.index(category), 1_000_003])
        ids = (category_rng.permutation(total) + 1).tolist()
        train_ids, test_ids = ids[:num_train_total], ids[num_train_total:]
        train_defective = set(category_rng.permutation(train_ids)[:num_train_defective].tolist()) if train_ids else set()
        test_defective = set(category_rng.permutation(test_ids)[:num_test_defective].tolist()) if test_ids else set()

        splits = [(TEST_DIRNAME, test_ids, test_defective)]
        if with_train:
            splits.insert(0, (TRAIN_DIRNAME, train_ids, train_defective))
        for split_name, split_ids, defective_ids in splits:
            _write_split(
                class_dir / split_name,
                category,
                split_ids,
                defective_ids,
                id_width,
                image_size,
                seed,
                defect_types,
                elliptical_labels,
            )
        logger.info("Wrote %d synthetic DAGM images (%d px) to %s.", total, image_size, class_dir)
    return root
