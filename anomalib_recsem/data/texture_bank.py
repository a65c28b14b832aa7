"""Anomaly-source textures for :class:`~anomalib_recsem.data.SyntheticDefect`.

Three sources of RGB textures, all returning float batches ``(N, 3, H, W)`` in ``[0, 1]``:

* :func:`procedural_textures` draws colourful textures (fractal value noise, stripes,
  checkerboards, blotches, linear/radial gradients, and blends of two of these) directly
  on the target device. It needs no files and is the default source.
* :class:`TextureFolder` serves images from a directory such as DTD (the source used by
  DRAEM and RecSem). Files are decoded lazily, each the first time it is drawn, squashed
  to ``size x size`` like the original ``cv2.resize`` and cached as ``uint8``; at any other
  output size, the resized texture is cached instead.
* :class:`PhotoCrops` cuts random square crops at every scale out of the photographs that
  ship with scikit-image (brick, grass, gravel, cells, ...): natural textures, like DTD's,
  without a download.

All random numbers are drawn on the CPU (from ``generator`` or torch's global generator)
and moved to the device, so a seed gives the same textures on CPU and GPU.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image
from torch import Tensor


__all__ = [
    "IMAGE_EXTENSIONS",
    "PROCEDURAL_RENDER_SIZE",
    "SKIMAGE_PHOTOS",
    "PhotoCrops",
    "TextureFolder",
    "find_texture_images",
    "fit_size",
    "procedural_textures",
    "resize_bilinear",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")

# Pattern families of the procedural bank.
_COLOUR_NOISE, _STRIPES, _CHECKER, _BLOTCHES, _GRADIENT, _SOFT_NOISE = range(6)
_NUM_FAMILIES = 6
# Lattice sizes of the value-noise octaves; octaves are summed at the finest lattice and
# upsampled once, which is far cheaper than upsampling every octave to full size.
_OCTAVES = (2, 4, 8, 16, 32)
# Longest side at which procedural patterns are rendered (see PROCEDURAL_RENDER_SIZE).
PROCEDURAL_RENDER_SIZE = 128


def fit_size(height: int, width: int, limit: int) -> tuple[int, int]:
    """``(height, width)`` scaled down, keeping the aspect ratio, so the longer side is at most ``limit``."""
    factor = max(1.0, max(height, width) / limit)
    return max(1, round(height / factor)), max(1, round(width / factor))


def resize_bilinear(images: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize (antialiased when shrinking) of ``(N, C, h, w)`` to ``(N, C, H, W)``.

    Channels are folded into the batch first: on CPU, ``upsample_bilinear2d`` is several
    times faster on single-channel NCHW input than on 3-channel input.
    """
    num, channels, in_h, in_w = images.shape
    if (in_h, in_w) == (height, width):
        return images
    shrinking = height < in_h or width < in_w
    flat = images.reshape(num * channels, 1, in_h, in_w)
    out = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking)
    return out.view(num, channels, height, width)


def _rand_split(generator: torch.Generator | None, *shapes: tuple[int, ...]) -> list[Tensor]:
    """``[torch.rand(shape, generator=generator) for shape in shapes]`` from one draw.

    The CPU generator fills a tensor element by element, so one draw split into views
    gives the same numbers and leaves the generator in the same state as the separate
    draws, for a fraction of the per-call overhead.
    """
    sizes = [math.prod(shape) for shape in shapes]
    draws = torch.rand(sum(sizes), generator=generator).split(sizes)
    return [draw.view(shape) for draw, shape in zip(draws, shapes, strict=True)]


def _value_noise(
    count: int,
    channels: int,
    height: int,
    width: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> Tensor:
    """Fractal value noise with per-image octave weights.

    Returns:
        Tensor ``(count, channels, H, W)``, zero mean and unit standard deviation per
        image and channel.
    """
    finest = _OCTAVES[-1]
    weights, tilt, *grids = _rand_split(
        generator,
        (count, len(_OCTAVES)),
        (count, 1),
        *((count, channels, lattice, lattice) for lattice in _OCTAVES),
    )
    weights = weights**2 + 1e-3
    # A random "roughness" tilts the weights towards coarse or fine octaves.
    tilt = tilt * 3.0 - 1.5  # U(-1.5, 1.5)
    weights = weights * torch.exp(tilt * torch.linspace(-1, 1, len(_OCTAVES)))
    total = torch.zeros(count, channels, finest, finest)
    for octave, (lattice, grid) in enumerate(zip(_OCTAVES, grids, strict=True)):
        if lattice != finest:
            grid = resize_bilinear(grid, finest, finest)  # noqa: PLW2901
        total += weights[:, octave].view(count, 1, 1, 1) * grid
    total = total.to(device, non_blocking=True)  # a blocking copy would wait for the GPU
    # Normalise on the small lattice (cheap) rather than on the upsampled image.
    mean = total.mean(dim=(2, 3), keepdim=True)
    std = (total - mean).square().mean(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-6)
    total = (total - mean) / std
    return resize_bilinear(total, height, width)


def _draw_layer_params(count: int, generator: torch.Generator | None) -> dict[str, Tensor]:
    """Per-image parameters of one pattern layer (all drawn, used or not, for a fixed RNG stream)."""
    family = torch.randint(0, _NUM_FAMILIES, (count,), generator=generator)
    angle, frequency, phase, hardness, level, radial, centre, colours, contrast = _rand_split(
        generator, (count,), (count,), (count,), (count,), (count,), (count,), (count, 2), (count, 2, 3), (count,)
    )
    return {
        "family": family,
        "angle": angle * math.pi,  # U(0, pi)
        # Cycles across the image, log-uniform so that coarse and fine patterns are equally likely.
        "frequency": torch.exp(frequency * (math.log(24.0) - math.log(1.5)) + math.log(1.5)),
        "phase": phase * (2 * math.pi),  # U(0, 2 pi)
        "hardness": torch.exp(hardness * math.log(20.0)),  # log-uniform in [1, 20)
        "level": level * 1.4 - 0.7,  # U(-0.7, 0.7)
        "radial": radial < 0.5,
        "centre": centre * 2.0 - 1.0,  # U(-1, 1)
        "colours": colours,
        "contrast": contrast * (0.3 - 0.1) + 0.1,  # U(0.1, 0.3)
    }


# The parameters each pattern family reads.
_FAMILY_KEYS: dict[int, tuple[str, ...]] = {
    _COLOUR_NOISE: ("colours", "contrast"),
    _STRIPES: ("angle", "frequency", "phase", "hardness", "colours"),
    _CHECKER: ("angle", "frequency", "phase", "hardness", "colours"),
    _BLOTCHES: ("level", "hardness", "colours"),
    _GRADIENT: ("angle", "centre", "radial", "colours"),
    _SOFT_NOISE: ("colours",),
}


def _render_layer(
    params: dict[str, Tensor],
    height: int,
    width: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> Tensor:
    """Render one pattern layer for every image described by ``params``.

    Returns:
        Tensor ``(N, 3, H, W)`` in ``[0, 1]``.
    """
    count = params["family"].shape[0]
    # Render in family order, so that every family writes one contiguous slice of `out`
    # (no scatter per family), and restore the image order once at the end.
    order = torch.argsort(params["family"], stable=True)
    counts = torch.bincount(params["family"], minlength=_NUM_FAMILIES).tolist()
    out = torch.empty(count, 3, height, width, device=device)
    # Aspect-preserving coordinates, about [-1, 1] along the longer side.
    scale = 2.0 / max(height, width)
    ys = ((torch.arange(height, device=device) + 0.5 - height / 2) * scale).view(1, 1, height, 1)
    xs = ((torch.arange(width, device=device) + 0.5 - width / 2) * scale).view(1, 1, 1, width)
    start = 0
    # Loop over pattern families (a fixed handful), not over images.
    for family, num in enumerate(counts):
        if num == 0:
            continue
        index = order[start : start + num]
        target = out[start : start + num]
        start += num
        p = {key: params[key][index].to(device, non_blocking=True) for key in _FAMILY_KEYS[family]}
        low = p["colours"][:, 0].view(num, 3, 1, 1)
        if family == _COLOUR_NOISE:
            noise = _value_noise(num, 3, height, width, generator, device)
            torch.clamp(noise.mul_(p["contrast"].view(num, 1, 1, 1)).add_(low), 0, 1, out=target)
            continue
        if family in (_STRIPES, _CHECKER, _GRADIENT):
            cos = torch.cos(p["angle"]).view(num, 1, 1, 1)
            sin = torch.sin(p["angle"]).view(num, 1, 1, 1)
        if family in (_STRIPES, _CHECKER):
            # Edges go from soft (hardness 1: a plain sine) to sharp (clipped sine ~ square wave).
            hardness = p["hardness"].view(num, 1, 1, 1)
            phase = p["phase"].view(num, 1, 1, 1)
            freq = (math.pi * p["frequency"]).view(num, 1, 1, 1)
            field = torch.sin((cos * freq) * xs + ((sin * freq) * ys + phase)).mul_(hardness).clamp_(-1, 1)
            if family == _CHECKER:
                wave_v = torch.sin((cos * freq) * ys + ((-sin * freq) * xs + phase)).mul_(hardness).clamp_(-1, 1)
                field = field.mul_(wave_v)
        elif family in (_BLOTCHES, _SOFT_NOISE):
            noise = _value_noise(num, 1, height, width, generator, device)
            if family == _BLOTCHES:
                hardness = p["hardness"].view(num, 1, 1, 1)
                field = noise.sub_(p["level"].view(num, 1, 1, 1)).mul_(hardness * 2).clamp_(-1, 1)
            else:
                field = noise.mul_(0.4).clamp_(-1, 1)
        else:  # _GRADIENT
            centre = p["centre"].view(num, 2, 1, 1)
            linear = cos * xs + sin * ys
            radial = torch.sqrt((xs - centre[:, :1]) ** 2 + (ys - centre[:, 1:]) ** 2) - 1
            use_radial = p["radial"].view(num, 1, 1, 1).to(radial.dtype)
            field = torch.lerp(linear, radial, use_radial).clamp_(-1, 1)
        # Map the [-1, 1] field onto a random two-colour ramp.
        high = p["colours"][:, 1].view(num, 3, 1, 1)
        torch.lerp(low, high, field.add_(1).mul_(0.5), out=target)
    return out[order.argsort().to(device, non_blocking=True)]


def procedural_textures(
    count: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Generate a batch of random colourful textures on ``device``.

    Each texture is one pattern (colour fractal noise, stripes at a random angle and
    frequency with random edge hardness, a rotated checkerboard, thresholded "blotch"
    noise, soft noise, or a linear/radial gradient) mapped onto a random two-colour
    ramp; half of them are blended with a second, independent pattern. Patterns are
    rendered at most ``PROCEDURAL_RENDER_SIZE`` pixels on the longer side and upsampled,
    which keeps the cost flat for large images (the finest detail is a few pixels anyway).

    Args:
        count: Number of textures ``N``.
        height: Texture height ``H``.
        width: Texture width ``W``.
        generator: Random generator (``None``: torch's global CPU generator).
        device: Device of the output.

    Returns:
        Float tensor ``(N, 3, H, W)`` in ``[0, 1]``.
    """
    device = torch.device(device)
    if count == 0:
        return torch.zeros(0, 3, height, width, device=device)
    render_h, render_w = fit_size(height, width, PROCEDURAL_RENDER_SIZE)
    first = _draw_layer_params(count, generator)
    second = _draw_layer_params(count, generator)
    mix_weight, mix_coin = _rand_split(generator, (count,), (count,))
    mix_weight = (mix_weight * (0.6 - 0.2) + 0.2) * (mix_coin < 0.5)  # U(0.2, 0.6) for half of them
    textures = _render_layer(first, render_h, render_w, generator, device)
    mixed = (mix_weight > 0).nonzero().squeeze(1)
    if mixed.numel() > 0:
        overlay = _render_layer({k: v[mixed] for k, v in second.items()}, render_h, render_w, generator, device)
        weight = mix_weight[mixed].to(device, non_blocking=True).view(-1, 1, 1, 1)
        rows = mixed.to(device, non_blocking=True)
        textures[rows] = torch.lerp(textures[rows], overlay, weight)
    return resize_bilinear(textures, height, width)


def find_texture_images(root: str | Path) -> list[Path]:
    """List the texture images under ``root``.

    ``root`` may be a DTD root (the ``images/`` sub-folder is used, so DTD's label and
    imdb files are ignored), a folder of class sub-folders, or any folder of images;
    the search is recursive and the extension match is case-insensitive.

    Args:
        root: Texture directory.

    Returns:
        Sorted list of image paths (sorted so that a seed picks the same files everywhere).

    Raises:
        FileNotFoundError: If ``root`` is not an existing directory.
        ValueError: If ``root`` holds no image with an extension in ``IMAGE_EXTENSIONS``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        msg = (f"anomaly_source: texture directory {str(root)!r} does not exist (or is not a directory); "
               "anomaly_source accepts None (procedural textures), 'photos', 'self' or a folder of images")
        raise FileNotFoundError(msg)

    def scan(folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())

    images_dir = root / "images"
    paths = scan(images_dir) if images_dir.is_dir() else []
    if not paths:
        paths = scan(root)
    if not paths:
        msg = (
            f"anomaly_source: no texture images found in {str(root)!r} "
            f"(searched recursively for extensions {', '.join(IMAGE_EXTENSIONS)}, case-insensitive)"
        )
        raise ValueError(msg)
    return paths


def _eight_bit(image: Image.Image) -> Image.Image:
    """``image``, with 16-bit grey levels scaled to 8 bits.

    PIL's conversion of a 16-bit grey image to RGB clips every level above 255, which turns
    most of a 16-bit texture white.
    """
    if image.mode.startswith("I;16") or (image.mode == "I" and image.getextrema()[1] > 255):  # noqa: PLR2004
        levels = np.asarray(image, dtype=np.float64) / 257  # 65535 -> 255
        return Image.fromarray(np.clip(np.rint(levels), 0, 255).astype(np.uint8))
    return image


class TextureFolder:
    """Lazily decoded, cached texture images from a directory.

    Args:
        root: Texture directory; see :func:`find_texture_images` for accepted layouts.
        size: Side length of the cached square textures (DRAEM and RecSem resize DTD
            to 256 x 256, ignoring the aspect ratio).

    Note:
        Each file is decoded the first time it is drawn and kept as ``uint8``
        ``(3, size, size)``: about 192 KiB per texture at 256, i.e. about 1.1 GB once all
        5640 DTD images have been drawn. Drawn at another size, a texture is kept resized
        instead, as float: the same 192 KiB at 128 px. Every DataLoader worker holds its
        own cache.
    """

    def __init__(self, root: str | Path, size: int = 256) -> None:
        self.root = Path(root).expanduser()
        self.size = size
        self.paths = find_texture_images(self.root)
        self._cache: dict[int, Tensor] = {}
        self._resized: dict[tuple[int, int], dict[int, Tensor]] = {}
        logger.info("Found %d texture images under %s", len(self.paths), self.root)

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict:
        # Do not ship decoded textures to DataLoader workers; they rebuild their own cache.
        state = self.__dict__.copy()
        state["_cache"], state["_resized"] = {}, {}
        return state

    def _decode(self, index: int) -> Tensor:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                # JPEG can decode at a reduced scale directly, several times faster.
                image.draft("RGB", (self.size, self.size))
                rgb = _eight_bit(image).convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
                array = np.asarray(rgb, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            msg = f"anomaly_source: cannot read texture image {str(path)!r}: {error}"
            raise OSError(msg) from error
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()

    def load(self, indices: Tensor) -> Tensor:
        """Return the textures with the given indices.

        Args:
            indices: Integer tensor ``(N,)`` of indices into ``paths``.

        Returns:
            ``uint8`` CPU tensor ``(N, 3, size, size)``.
        """
        wanted = [int(i) for i in indices.tolist()]
        # Decoding is file I/O, so this loop is over distinct new files, not a per-image op.
        for index in sorted(set(wanted) - self._cache.keys()):
            self._cache[index] = self._decode(index)
        if not wanted:
            return torch.zeros(0, 3, self.size, self.size, dtype=torch.uint8)
        # NumPy's stack is one serial copy; torch.stack copies each texture in a parallel
        # region of its own, which costs more in thread wake-ups than the copy itself.
        return torch.from_numpy(np.stack([self._cache[i].numpy() for i in wanted]))

    def sample(
        self,
        count: int,
        height: int,
        width: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Draw ``count`` textures uniformly at random (with replacement).

        Args:
            count: Number of textures ``N``.
            height: Output height ``H``.
            width: Output width ``W``.
            generator: Random generator (``None``: torch's global CPU generator).
            device: Device of the output.

        Returns:
            Float tensor ``(N, 3, H, W)`` in ``[0, 1]``.
        """
        indices = torch.randint(0, len(self.paths), (count,), generator=generator)
        return self.textures(indices, height, width, device)

    def textures(self, indices: Tensor, height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
        """The textures with the given indices, resized (antialiased when shrinking).

        Args:
            indices: Integer tensor ``(N,)`` of indices into ``paths``.
            height: Output height ``H``.
            width: Output width ``W``.
            device: Device of the output.

        Returns:
            Float tensor ``(N, 3, H, W)`` in ``[0, 1]``.
        """
        if (height, width) == (self.size, self.size):
            # Moved as uint8, a quarter of the bytes, and scaled on the device.
            return self.load(indices).to(device, non_blocking=True).float().div_(255)
        # Resized once per texture and kept: at 128 px on 2 CPU cores, the antialiased resize
        # of a batch's textures took about 1 ms of the 6-7 ms that its synthesis took.
        cache = self._resized.setdefault((height, width), {})
        wanted = [int(i) for i in indices.tolist()]
        new = sorted(set(wanted) - cache.keys())
        if new:
            resized = resize_bilinear(self.load(torch.tensor(new)).float().div_(255), height, width)
            for index, texture in zip(new, resized.unbind(), strict=True):
                cache[index] = texture.clone()
                self._cache.pop(index)  # drawn at this size from now on
        if not wanted:
            return torch.zeros(0, 3, height, width, device=device)
        return torch.from_numpy(np.stack([cache[i].numpy() for i in wanted])).to(device, non_blocking=True)


#: Photographs bundled with scikit-image (installed with anomalib), read from its ``data``
#: folder: textures (brick, grass, gravel, cells, retina, the moon's surface, a star field,
#: printed text) and scenes. Named one by one so that a scikit-image release adding images
#: does not change what a seed draws.
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png", "coins.png", "grass.png",
    "gravel.png", "hubble_deep_field.jpg", "ihc.png", "microaneurysms.png", "moon.png", "motorcycle_left.png",
    "retina.jpg", "rocket.jpg", "page.png", "text.png",
)  # fmt: skip


def skimage_data_folder() -> Path:
    """scikit-image's ``data`` folder, found without importing scikit-image (about a second)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        msg = "anomaly_source 'photos' reads scikit-image's bundled photographs, but scikit-image is not installed."
        raise ModuleNotFoundError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "data"


class PhotoCrops:
    """Random square crops of photographs: natural textures at every scale, without downloads.

    Each draw picks a photograph, a crop side uniform between ``min_side`` and the
    photograph's shorter side (in its own pixels), and a position, and resizes the crop
    (antialiased) to the requested size, on the device asked for. Photographs are decoded on
    the first draw, shrunk so that their shorter side is at most ``2 * size`` (a crop's cost
    then stays flat), and kept (12 MB), with a copy on each device drawn for.

    Args:
        folder: Folder of the photographs (default: scikit-image's ``data`` folder).
        names: File names in ``folder`` (default: :data:`SKIMAGE_PHOTOS`).
        size: Longest side the textures are drawn at before the defect's own resize (256,
            as for :class:`TextureFolder`).
        min_side: Smallest crop side, in the photograph's own pixels.

    Raises:
        FileNotFoundError: If a photograph is missing, naming it and the folder.
    """

    def __init__(self, folder: Path | None = None, names: tuple[str, ...] = SKIMAGE_PHOTOS, size: int = 256,
                 min_side: int = 64) -> None:
        folder = skimage_data_folder() if folder is None else Path(folder)
        self.paths = [folder / name for name in names]
        missing = [path.name for path in self.paths if not path.is_file()]
        if missing or not self.paths:
            msg = (f"anomaly_source 'photos': {folder} lacks {', '.join(missing) or 'every photograph'}; "
                   "pass a folder of texture images as anomaly_source instead.")
            raise FileNotFoundError(msg)
        self.size = size
        self.min_side = min_side
        self._photos: list[tuple[Tensor, float]] = []  # (uint8 (3, h, w), shrink factor)
        self._on_device: dict[torch.device, list[Tensor]] = {}  # the photographs where crops are cut

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict:
        # DataLoader workers decode their own copies.
        state = self.__dict__.copy()
        state["_photos"], state["_on_device"] = [], {}
        return state

    def _decoded(self) -> list[tuple[Tensor, float]]:
        if not self._photos:
            for path in self.paths:
                try:
                    with Image.open(path) as image:
                        rgb = image.convert("RGB")
                except (OSError, ValueError, SyntaxError) as error:
                    msg = f"anomaly_source 'photos': cannot read {str(path)!r}: {error}"
                    raise OSError(msg) from error
                factor = min(1.0, 2 * self.size / min(rgb.size))
                if factor < 1:
                    rgb = rgb.resize((round(rgb.width * factor), round(rgb.height * factor)), Image.Resampling.BILINEAR)
                self._photos.append((torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1), factor))
        return self._photos

    def sample(
        self,
        count: int,
        height: int,
        width: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Draw ``count`` crops, each resized to ``(height, width)``: as :meth:`TextureFolder.sample`."""
        device = torch.device(device)
        photos = self._decoded()
        if device not in self._on_device:  # cut and resized where training runs: no copy per batch
            self._on_device[device] = [photo.to(device) for photo, _ in photos]
        picks = torch.randint(0, len(photos), (count,), generator=generator).tolist()
        draws = torch.rand(count, 3, generator=generator, dtype=torch.float64).tolist()
        crops = []
        for index, (side_draw, top_draw, left_draw) in zip(picks, draws, strict=True):
            photo, factor = self._on_device[device][index], photos[index][1]
            shortest = min(photo.shape[-2:])
            native = round(shortest / factor)  # the shorter side as stored
            low = min(self.min_side, native)
            side = min(shortest, max(1, round((low + side_draw * (native - low)) * factor)))
            top = int(top_draw * (photo.shape[-2] - side + 1))
            left = int(left_draw * (photo.shape[-1] - side + 1))
            crop = photo[:, top : top + side, left : left + side].unsqueeze(0).float().div_(255)
            crops.append(resize_bilinear(crop, height, width))
        if not crops:
            return torch.zeros(0, 3, height, width, device=device)
        return torch.cat(crops)
