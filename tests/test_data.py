"""Data for the training objective: the sources, their errors, and tensor augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from optuna_deepens import data
from optuna_deepens.data import DataError


def _write_cifar(folder: Path, variant: str, n: int) -> np.ndarray:
    """Tiny CIFAR binary files; returns the pixels of the first training image."""
    folder.mkdir(parents=True)
    label_bytes = 1 if variant == "cifar10" else 2
    rng = np.random.default_rng(0)
    records = rng.integers(0, 256, size=(n, label_bytes + 3072), dtype=np.uint8)
    records[:, label_bytes - 1] = np.arange(n) % (10 if variant == "cifar10" else 100)
    names = (
        [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        if variant == "cifar10"
        else ["train.bin", "test.bin"]
    )
    for name in names:
        records.tofile(folder / name)
    return records[0, label_bytes:].reshape(3, 32, 32)


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_binary_files_are_read_as_bytes(tmp_path: Path, variant: str) -> None:
    first = _write_cifar(tmp_path / "batches-bin", variant, 12)
    loaded = data.cifar(tmp_path, variant=variant)  # The parent folder is searched too.
    n_train = 12 * (5 if variant == "cifar10" else 1)
    assert loaded.x_train.shape == (n_train, 3, 32, 32) and loaded.x_train.dtype == torch.uint8
    assert loaded.x_val.shape == (12, 3, 32, 32)
    assert torch.equal(loaded.x_train[0], torch.from_numpy(first))
    expected = list(range(10)) + [0, 1] if variant == "cifar10" else list(range(12))
    assert loaded.y_train[:12].tolist() == expected
    assert loaded.num_classes == (10 if variant == "cifar10" else 100)
    held = data.cifar(tmp_path, variant=variant, holdout=4)
    assert len(held.x_val) == 4 and len(held.x_train) == n_train - 4


def test_cifar_errors_name_the_fix(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError, match="binary"):
        data.cifar(tmp_path)
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "data_batch_1.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="3073-byte records"):
        data.cifar(folder)
    with pytest.raises(DataError, match="variant"):
        data.cifar(folder, variant="mnist")


def test_digits_are_upscaled_rgb_and_split_the_same_way_every_time() -> None:
    pytest.importorskip("sklearn")
    first, second = data.digits(), data.digits()
    assert first.x_train.shape == (1348, 3, 32, 32) and first.x_val.shape == (449, 3, 32, 32)
    assert first.num_classes == 10 and first.name == "digits"
    assert torch.equal(first.y_val, second.y_val)
    assert torch.equal(first.x_train[:, 0], first.x_train[:, 2])  # Grey as RGB.
    assert data.digits(image_size=16).image_size == 16


def test_image_folder_with_and_without_a_split(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    for split in ("flat", "split/train", "split/val"):
        for label, colour in (("cat", (250, 0, 0)), ("dog", (0, 0, 250))):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(5):
                image_module.new("RGB", (40, 30), colour).save(folder / f"{i}.png")
    flat = data.image_folder(tmp_path / "flat", image_size=16, val_fraction=0.2)
    assert flat.num_classes == 2 and flat.image_size == 16
    assert len(flat.x_train) + len(flat.x_val) == 10 and len(flat.x_val) == 2
    split = data.load_data(f"folder:{tmp_path / 'split'}", image_size=8)
    assert len(split.x_train) == len(split.x_val) == 10
    cats = split.x_train[split.y_train == 0]
    assert cats[:, 0].float().mean() > 200 and cats[:, 2].float().mean() < 50
    with pytest.raises(DataError, match="no class subfolders"):
        data.image_folder(tmp_path / "flat" / "cat")


def test_tensors_and_datasets() -> None:
    x = torch.rand(20, 3, 8, 8)
    y = torch.arange(20) % 4
    from_floats = data.from_tensors(x, y, x[:5], y[:5])
    assert from_floats.x_train.dtype == torch.uint8 and from_floats.num_classes == 4
    dataset = torch.utils.data.TensorDataset(x, y)
    from_dataset = data.from_datasets(dataset, dataset)
    assert torch.equal(from_dataset.x_train, from_floats.x_train)
    with pytest.raises(DataError, match="outside \\[0, 1\\]"):
        data.from_tensors(x * 255, y, x, y)
    with pytest.raises(DataError, match=r"\[N, C, H, W\]"):
        data.from_tensors(x[0], y, x, y)


def test_data_specs_are_checked() -> None:
    with pytest.raises(DataError, match="expected digits, cifar10:PATH"):
        data.load_data("imagenet")


def test_augmented_batches_are_crops_and_flips_of_the_padded_images() -> None:
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    images = data.from_tensors(x, torch.arange(6), x, torch.arange(6))
    batches = data.Batches(
        images,
        batch_size=6,
        train=True,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )
    ((augmented, labels),) = list(batches)
    mean = torch.tensor(images.mean).view(1, 3, 1, 1)
    std = torch.tensor(images.std).view(1, 3, 1, 1)
    padded = torch.nn.functional.pad((x.float() / 255 - mean) / std, (4, 4, 4, 4))
    for image, label in zip(augmented, labels):
        source = padded[label]
        windows = [
            window
            for dy in range(9)
            for dx in range(9)
            for window in (source[:, dy : dy + 8, dx : dx + 8],)
            for window in (window, window.flip(2))
        ]
        assert any(torch.allclose(image, w) for w in windows)
    assert sorted(labels.tolist()) == list(range(6))  # Every image once per epoch.
    # Validation batches are in order and untouched.
    ((val, val_labels),) = list(
        data.Batches(images, batch_size=6, train=False, device=torch.device("cpu"))
    )
    assert torch.allclose(val, padded[:, :, 4:12, 4:12]) and val_labels.tolist() == list(range(6))


def test_augmented_batches_have_the_layout_asked_for() -> None:
    """Crops are gathered as channels-last; returned contiguous unless channels-last is asked.

    Some CPU convolutions of torch 2.13 corrupted memory on the channels-last view (MobileOne,
    224 px), so the layout is part of the contract.
    """
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    images = data.from_tensors(x, torch.arange(4), x, torch.arange(4))
    for channels_last in (False, True):
        batches = data.Batches(
            images,
            batch_size=4,
            train=True,
            device=torch.device("cpu"),
            channels_last=channels_last,
        )
        ((batch, _),) = list(batches)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert batch.is_contiguous(memory_format=layout)
