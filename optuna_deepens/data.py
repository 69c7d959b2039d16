"""Image-classification data for the training objective, as tensors, with augmentation on tensors.

NAS trains hundreds of small networks on the same small images, so the data is held as one
``uint8`` tensor per split and batches are cut from it by index: no worker processes, no
per-image Python, and on CUDA the whole set stays in GPU memory when it fits (CIFAR-10 is
150 MiB as bytes). Augmentation is the standard one for 32-pixel images, a random crop from the
image padded by 4 pixels and a horizontal flip, done on whole batches.

Sources, by the spec string the command line takes (:func:`load_data`):

* ``digits``: scikit-learn's bundled handwritten digits, upscaled to 32x32 RGB: a real run with
  no download (``pip install optuna-deepens[examples]``);
* ``cifar10:PATH`` / ``cifar100:PATH``: the *binary* CIFAR files (``cifar-10-batches-bin``,
  ``cifar-100-binary``), parsed as raw bytes, never unpickled;
* ``folder:PATH``: one subfolder per class, or ``train/`` and ``val/`` folders of those (needs
  Pillow: ``pip install optuna-deepens[images]``);
* any tensors or ``torch.utils.data.Dataset`` objects, through :func:`from_tensors` and
  :func:`from_datasets`.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
_CROP_PADDING = 4
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(ValueError):
    """Data that cannot be read or does not have the expected layout; the message says why."""


@dataclass(frozen=True)
class ImageData:
    """Train and validation images as ``uint8`` tensors ``[N, C, H, W]`` and labels ``[N]``.

    ``mean`` and ``std`` (per channel, on the ``[0, 1]`` scale) normalise batches.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    name: str = "data"
    mean: tuple[float, ...] = CIFAR_MEAN
    std: tuple[float, ...] = CIFAR_STD

    def __post_init__(self) -> None:
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("val", self.x_val, self.y_val),
        ):
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise DataError(
                    f"{split} images must be uint8 [N, C, H, W]; got {x.dtype} {tuple(x.shape)}."
                )
            if y.dim() != 1 or len(y) != len(x):
                raise DataError(
                    f"{split} labels must be [N] for {len(x)} images; got {tuple(y.shape)}."
                )
            if len(x) == 0:
                raise DataError(f"The {split} split is empty.")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DataError(f"mean and std need one value per channel ({self.channels}).")

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A normalised zero batch of this data's shape, for zero-cost metrics."""
        return torch.zeros(batch_size, self.channels, self.image_size, self.image_size)

    def to(self, device: torch.device | str) -> ImageData:
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_val=self.x_val.to(device),
            y_val=self.y_val.to(device),
        )

    def subset(self, n_train: int, n_val: int) -> ImageData:
        """The first ``n_train`` training and ``n_val`` validation images (quick runs)."""
        if n_train < 1 or n_val < 1:
            raise DataError(f"subset({n_train}, {n_val}): keep at least one image of each split.")
        return replace(
            self,
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_val=self.x_val[:n_val],
            y_val=self.y_val[:n_val],
        )

    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for t in (self.x_train, self.y_train, self.x_val, self.y_val)
        )


class Batches:
    """Mini-batches of normalised float images, cut from ``ImageData`` by index.

    Args:
        data: Images and labels on any device; batches are moved to ``device``.
        train: The training split, shuffled and augmented; else the validation split in order.
        generator: Seeds the order and the augmentation (on the CPU, so runs repeat anywhere).
        channels_last: Return batches in the channels-last memory format (faster convolutions
            on CUDA tensor cores).
    """

    def __init__(
        self,
        data: ImageData,
        *,
        batch_size: int,
        train: bool,
        device: torch.device,
        generator: torch.Generator | None = None,
        augment: bool = True,
        channels_last: bool = False,
    ) -> None:
        self._x = data.x_train if train else data.x_val
        self._y = data.y_train if train else data.y_val
        self._train = train
        self._augment = augment and train
        self._batch_size = batch_size
        self._device = device
        self._generator = generator
        self._channels_last = channels_last
        shape = (1, data.channels, 1, 1)
        self._mean = torch.tensor(data.mean, device=device).view(shape)
        self._std = torch.tensor(data.std, device=device).view(shape)

    def __len__(self) -> int:
        return math.ceil(len(self._x) / self._batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self._x)
        if self._train:
            order = torch.randperm(n, generator=self._generator)
        else:
            order = torch.arange(n)
        order = order.to(self._x.device)
        for start in range(0, n, self._batch_size):
            index = order[start : start + self._batch_size]
            x = self._x[index].to(self._device, non_blocking=True)
            y = self._y[index].to(self._device, non_blocking=True)
            x = (x.float() / 255.0 - self._mean) / self._std
            if self._augment:
                x = self._crop_and_flip(x)
            if self._channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def _crop_and_flip(self, x: torch.Tensor) -> torch.Tensor:
        """Random crops of the zero-padded images and random horizontal flips, per image."""
        n, _, h, w = x.shape
        p = _CROP_PADDING
        padded = F.pad(x, (p, p, p, p))
        offsets = torch.randint(0, 2 * p + 1, (2, n), generator=self._generator).to(x.device)
        rows = offsets[0][:, None] + torch.arange(h, device=x.device)  # [n, h]
        cols = offsets[1][:, None] + torch.arange(w, device=x.device)  # [n, w]
        flip = (torch.rand(n, generator=self._generator) < 0.5).to(x.device)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        batch = torch.arange(n, device=x.device)[:, None, None]
        crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
        # [n, h, w, c] viewed as [n, c, h, w] is channels-last already. Otherwise copy to the
        # usual layout: some CPU convolutions of torch 2.13 corrupt memory on this one (seen
        # with MobileOne at 224 px).
        crops = crops.permute(0, 3, 1, 2)
        return crops if self._channels_last else crops.contiguous()


# ------------------------------------------------------------------------------- sources
def from_tensors(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    num_classes: int | None = None,
    name: str = "tensors",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ImageData:
    """Images as ``uint8`` ``[N, C, H, W]`` or floats in ``[0, 1]``; labels as integers.

    ``mean`` and ``std`` default to the training images' own per-channel statistics.
    """
    x_train, x_val = _as_uint8(x_train, "x_train"), _as_uint8(x_val, "x_val")
    y_train, y_val = torch.as_tensor(y_train).long(), torch.as_tensor(y_val).long()
    if num_classes is None:
        num_classes = int(max(y_train.max(), y_val.max())) + 1
    if mean is None or std is None:
        pixels = x_train.float().div(255).transpose(0, 1).reshape(x_train.shape[1], -1)
        mean = tuple(pixels.mean(1).tolist()) if mean is None else mean
        std = tuple(pixels.std(1).clamp_min(1e-3).tolist()) if std is None else std
    return ImageData(x_train, y_train, x_val, y_val, num_classes, name, tuple(mean), tuple(std))


def from_datasets(
    train: torch.utils.data.Dataset,
    val: torch.utils.data.Dataset,
    *,
    num_classes: int | None = None,
    name: str = "dataset",
) -> ImageData:
    """Map-style datasets of ``(image [C, H, W], label)``, read once into memory."""
    return from_tensors(*_stack(train), *_stack(val), num_classes=num_classes, name=name)


def digits(*, image_size: int = 32, val_fraction: float = 0.25, seed: int = 0) -> ImageData:
    """scikit-learn's 1,797 handwritten digits as RGB ``image_size`` images (no download)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise DataError(
            "The digits data needs scikit-learn: pip install optuna-deepens[examples]"
        ) from error
    bunch = load_digits()
    images = torch.from_numpy(bunch.images / 16.0).float()[:, None]
    images = F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(bunch.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * len(labels)))
    val, train = order[:n_val], order[n_val:]
    return from_tensors(
        images[train], labels[train], images[val], labels[val], num_classes=10, name="digits"
    )


def cifar(path: str | Path, *, variant: str = "cifar10", holdout: int = 0) -> ImageData:
    """CIFAR-10 or CIFAR-100 from the binary version's files, read as bytes.

    Args:
        path: The folder holding ``data_batch_1.bin`` ... ``test_batch.bin`` (CIFAR-10) or
            ``train.bin`` and ``test.bin`` (CIFAR-100), or a parent of it.
        variant: ``"cifar10"`` or ``"cifar100"`` (fine labels).
        holdout: Validate on the last ``holdout`` training images instead of the test set, so
            the test set stays unseen by the search.
    """
    if variant not in ("cifar10", "cifar100"):
        raise DataError(f"variant={variant!r}; choose 'cifar10' or 'cifar100'.")
    if variant == "cifar10":
        train_files = [f"data_batch_{i}.bin" for i in range(1, 6)]
        test_files, label_bytes, label_at = ["test_batch.bin"], 1, 0
    else:
        train_files, test_files, label_bytes, label_at = ["train.bin"], ["test.bin"], 2, 1
    folder = _find_folder(Path(path), train_files[0], variant)
    x_train, y_train = _read_cifar(folder, train_files, label_bytes, label_at)
    x_val, y_val = _read_cifar(folder, test_files, label_bytes, label_at)
    if holdout:
        if not 0 < holdout < len(x_train):
            raise DataError(f"holdout={holdout}: must be between 1 and {len(x_train) - 1}.")
        x_val, y_val = x_train[-holdout:], y_train[-holdout:]
        x_train, y_train = x_train[:-holdout], y_train[:-holdout]
    classes = 10 if variant == "cifar10" else 100
    return ImageData(x_train, y_train, x_val, y_val, classes, variant, CIFAR_MEAN, CIFAR_STD)


def image_folder(
    path: str | Path, *, image_size: int = 32, val_fraction: float = 0.1, seed: int = 0
) -> ImageData:
    """Images in one subfolder per class (or ``train/`` and ``val/`` holding such folders)."""
    try:
        from PIL import Image
    except ImportError as error:
        raise DataError(
            "Reading an image folder needs Pillow: pip install optuna-deepens[images]"
        ) from error
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder.")
    split = (root / "train").is_dir() and (root / "val").is_dir()
    classes = sorted(p.name for p in (root / "train" if split else root).iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{root} holds no class subfolders (one folder of images per class).")

    def read(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for label, name in enumerate(classes):
            for file in sorted((folder / name).iterdir()) if (folder / name).is_dir() else []:
                if file.suffix.lower() not in _IMAGE_SUFFIXES:
                    continue
                with Image.open(file) as image:
                    rgb = image.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                images.append(torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1))
                labels.append(label)
        if not images:
            raise DataError(f"No images under {folder} (looked for {sorted(_IMAGE_SUFFIXES)}).")
        return torch.stack(images), torch.tensor(labels)

    if split:
        x_train, y_train = read(root / "train")
        x_val, y_val = read(root / "val")
    else:
        x, y = read(root)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, int(round(val_fraction * len(y))))
        x_val, y_val, x_train, y_train = (
            x[order[:n_val]],
            y[order[:n_val]],
            x[order[n_val:]],
            y[order[n_val:]],
        )
    return from_tensors(x_train, y_train, x_val, y_val, num_classes=len(classes), name=root.name)


DATA_SPECS = "digits, cifar10:PATH, cifar100:PATH or folder:PATH"


def load_data(spec: str, *, image_size: int = 32, limit: int | None = None) -> ImageData:
    """Data from a command-line spec (``digits``, ``cifar10:PATH``, ``folder:PATH`` ...).

    ``limit`` keeps the first ``limit`` training images and a quarter as many validation ones.
    """
    kind, _, path = spec.partition(":")
    if kind == "digits" and not path:
        loaded = digits(image_size=image_size)
    elif kind in ("cifar10", "cifar100") and path:
        loaded = cifar(path, variant=kind)
    elif kind == "folder" and path:
        loaded = image_folder(path, image_size=image_size)
    else:
        raise DataError(f"--data {spec!r}: expected {DATA_SPECS}.")
    return loaded if limit is None else loaded.subset(limit, max(1, limit // 4))


# ------------------------------------------------------------------------------- helpers
def _as_uint8(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 4:
        raise DataError(f"{name} must be [N, C, H, W]; got shape {tuple(x.shape)}.")
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise DataError(f"{name} must be uint8 or floats in [0, 1]; got {x.dtype}.")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise DataError(f"{name} holds floats outside [0, 1]; scale them (x / 255) or pass uint8.")
    return (x * 255).round().to(torch.uint8)


def _stack(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for i in range(len(dataset)):  # type: ignore[arg-type]
        image, label = dataset[i]
        images.append(torch.as_tensor(image))
        labels.append(int(label))
    if not images:
        raise DataError("The dataset is empty.")
    return torch.stack(images), torch.tensor(labels)


def _find_folder(path: Path, marker: str, variant: str) -> Path:
    for folder in (path, *sorted(p for p in path.glob("*") if p.is_dir())):
        if (folder / marker).is_file():
            return folder
    raise DataError(
        f"No {marker} in {path} or its subfolders. Give the folder of the *binary* {variant} "
        "files (cifar-10-batches-bin or cifar-100-binary), not the Python (pickle) version."
    )


def _read_cifar(
    folder: Path, files: Sequence[str], label_bytes: int, label_at: int
) -> tuple[torch.Tensor, torch.Tensor]:
    record = label_bytes + 3 * 32 * 32
    images, labels = [], []
    for name in files:
        raw = np.fromfile(folder / name, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise DataError(f"{folder / name} is not a CIFAR binary file ({record}-byte records).")
        rows = raw.reshape(-1, record)
        labels.append(torch.from_numpy(rows[:, label_at].astype(np.int64)))
        images.append(torch.from_numpy(rows[:, label_bytes:].reshape(-1, 3, 32, 32).copy()))
    return torch.cat(images), torch.cat(labels)
