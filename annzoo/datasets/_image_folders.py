"""``"images:DIR"`` datasets: one subfolder of images per class, decoded by Pillow.

No TensorFlow, so any Keras backend works. Pillow (installed with matplotlib,
not a direct requirement) is a deferred import: `import annzoo` does not need
it, and a missing Pillow is reported when the first folder is parsed. See
`annzoo.datasets.files` for the options. A fixed test folder (``test_dir``)
has the same layout; its images follow the main folder's in the parsed source
and its class subfolders must be classes of the main folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annzoo._checks import check_choice, is_int
from annzoo.datasets._base import ArrayDataset
from annzoo.datasets._parsed import (
    _cached,
    _dataset,
    _info,
    _Parsed,
    _path_of,
    _splits,
    _stat_key,
)
from annzoo.errors import AnnzooError

IMAGES_PREFIX = "images:"
COLOR_MODES: tuple[str, ...] = ("rgb", "grayscale")
IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _class_folders(directory: Path, name: str) -> list[Path]:
    if not directory.is_dir():
        what = "is a file" if directory.exists() else "does not exist"
        raise AnnzooError(
            f"Dataset {name!r} must name a folder of class subfolders; "
            f"{str(directory)!r} {what}. Received: name={name!r}"
        )
    classes = sorted(
        (p for p in directory.iterdir() if p.is_dir() and _visible(p.name)),
        key=lambda p: p.name,
    )
    if not classes:
        raise AnnzooError(
            f"Dataset {name!r}: {str(directory)!r} has no class subfolders; it "
            f"must hold one folder of images per class (e.g. {directory}/cats/"
            f"001.png). Received: name={name!r}"
        )
    return classes


def _images_in(folder: Path) -> list[Path]:
    found = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and all(_visible(part) for part in p.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _listing(
    directory: Path, name: str, known: list[str] | None = None
) -> tuple[list[Path], list[str], np.ndarray]:
    """Files, class names and labels; with ``known`` (a test folder's listing)
    every class subfolder must be one of those classes, labelled as there."""
    classes = _class_folders(directory, name)
    files: list[Path] = []
    labels: list[int] = []
    for position, folder in enumerate(classes):
        label = position
        if known is not None:
            if folder.name not in known:
                raise AnnzooError(
                    f"`test_dir` must hold only subfolders named like the classes of "
                    f"{name!r} ({known}); {str(folder)!r} is not one. Received: "
                    f"test_dir={str(directory)!r}"
                )
            label = known.index(folder.name)
        images = _images_in(folder)
        if not images:
            raise AnnzooError(
                f"Dataset {name!r}: the class folder {str(folder)!r} has no images "
                f"({', '.join(IMAGE_EXTENSIONS)}). Add some or remove the folder."
            )
        files.extend(images)
        labels.extend([label] * len(images))
    if len(classes) < 2 and known is None:
        raise AnnzooError(
            f"Dataset {name!r}: {str(directory)!r} has a single class subfolder "
            f"{classes[0].name!r}; classification needs at least two classes."
        )
    return files, [c.name for c in classes], np.asarray(labels, dtype=np.int32)


def image_files(directory: str | os.PathLike) -> list[Path]:
    """The images of an ``"images:DIR"`` dataset, in the order of its ``indices``.

    Class folders in sorted order, each one's images sorted by relative path:
    ``image_files(DIR)[i]`` is the file of the sample whose index is ``i``.
    """
    return _listing(Path(directory), f"{IMAGES_PREFIX}{directory}")[0]


def _check_image_options(image_size: Any, color_mode: Any) -> tuple[int, int]:
    if image_size is None:
        raise AnnzooError(
            "`image_size` is required for 'images:DIR' datasets: [height, width] "
            "to resize every image to (in a recipe, data.options.image_size). "
            "Received: image_size=None"
        )
    if (
        isinstance(image_size, str)
        or not isinstance(image_size, Sequence)
        or len(image_size) != 2
        or not all(is_int(v) and v > 0 for v in image_size)
    ):
        raise AnnzooError(
            "`image_size` must be [height, width], two positive integers. "
            f"Received: image_size={image_size!r}"
        )
    check_choice("color_mode", color_mode, COLOR_MODES)
    return int(image_size[0]), int(image_size[1])


def _decode(file: Path, size: tuple[int, int], color_mode: str) -> np.ndarray:
    from PIL import Image  # deferred: checked by _parse_images, see module doc

    height, width = size
    try:
        with Image.open(file) as image:
            if image.mode.startswith("I"):  # 16-bit grayscale: scale, not clip
                levels = np.asarray(image, dtype=np.float64) / 257.0
                image = Image.fromarray(np.clip(np.rint(levels), 0, 255).astype("u1"))
            image = image.convert("L" if color_mode == "grayscale" else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except Exception as error:  # Pillow raises many types for bad files
        raise AnnzooError(
            f"Could not read the image file {str(file)!r}: {type(error).__name__}: "
            f"{error}. Remove or replace it."
        ) from None
    return array[..., np.newaxis] if array.ndim == 2 else array


def _parse_images(
    directory: Path,
    name: str,
    size: tuple[int, int],
    color_mode: str,
    files,
    labels,
    classes,
    fixed=(),
) -> _Parsed:
    try:
        import PIL  # noqa: F401
    except ImportError as error:  # pragma: no cover - Pillow is a dependency
        raise AnnzooError(
            "'images:DIR' datasets need Pillow, which is not installed: "
            "pip install pillow"
        ) from error
    channels = 1 if color_mode == "grayscale" else 3
    x = np.empty((len(files), *size, channels), dtype=np.uint8)
    for i, file in enumerate(files):
        x[i] = _decode(file, size, color_mode)
    class_names = tuple(classes)
    test = f" Test split: {dict(fixed)['test']} images." if fixed else ""
    return _Parsed(
        x=x,
        y=labels,
        task="binary" if len(class_names) == 2 else "multiclass",
        class_names=class_names,
        feature_names=None,
        description=(
            f"Images in {str(directory)!r}: {len(files)} images of "
            f"{len(class_names)} classes (one subfolder each), resized to "
            f"{size[0]}x{size[1]}, {color_mode}, float32 in [0, 1].{test}"
        ),
        fixed=fixed,
    )


def _test_folder(test_dir: Any) -> Path | None:
    if test_dir is None:
        return None
    if not isinstance(test_dir, (str, os.PathLike)):
        raise AnnzooError(
            "`test_dir` must be the path of a folder of class subfolders or None. "
            f"Received: test_dir={test_dir!r}"
        )
    path = Path(os.path.expanduser(os.fspath(test_dir)))
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise AnnzooError(
            f"`test_dir` must be an existing folder of class subfolders; "
            f"{str(path)!r} {what}. Received: test_dir={test_dir!r}"
        )
    return path


def _images(
    name: str, image_size: Any, color_mode: Any, test_dir: Any = None
) -> _Parsed:
    size = _check_image_options(image_size, color_mode)
    test_path = _test_folder(test_dir)
    directory = _path_of(name, IMAGES_PREFIX)
    files, classes, labels = _listing(directory, name)
    fixed: tuple[tuple[str, int], ...] = ()
    if test_path is not None:
        test_files, _, test_labels = _listing(test_path, name, known=classes)
        files = files + test_files
        labels = np.concatenate([labels, test_labels])
        fixed = (("test", len(test_files)),)
    stamps = tuple((os.fspath(f), *_stat_key(f)) for f in files)
    key = (IMAGES_PREFIX, str(directory.resolve()), stamps, size, color_mode, fixed)
    return _cached(
        key,
        lambda: _parse_images(
            directory, name, size, color_mode, files, labels, classes, fixed
        ),
    )


def _load_images(
    name: str,
    split: str,
    seed: int,
    *,
    image_size: Sequence[int] | None = None,
    color_mode: str = "rgb",
    test_dir: str | os.PathLike | None = None,
) -> ArrayDataset:
    parsed = _images(name, image_size, color_mode, test_dir)
    idx = _splits(parsed, seed)[split]
    x = parsed.x[idx].astype(np.float32) / np.float32(255)
    return _dataset(parsed, name, split, seed, x, idx)


def _info_images(
    name: str,
    *,
    image_size: Sequence[int] | None = None,
    color_mode: str = "rgb",
    test_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    parsed = _images(name, image_size, color_mode, test_dir)
    return _info(parsed, f"image folder {str(_path_of(name, IMAGES_PREFIX))!r}")
