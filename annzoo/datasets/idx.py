"""`read_idx`: the IDX files MNIST (and Fashion-MNIST, EMNIST) are published in.

The format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic
number, two zero bytes, then a byte naming the element type and a byte giving
the number of dimensions; one big-endian unsigned 32-bit size per dimension;
then the elements, big-endian, in C order. The files are usually distributed
gzip-compressed (``train-images-idx3-ubyte.gz``); `read_idx` reads both forms,
telling them apart by the gzip magic bytes, not by the file name.

>>> from annzoo import datasets
>>> x = datasets.read_idx("train-images-idx3-ubyte.gz")   # (60000, 28, 28) uint8
>>> y = datasets.read_idx("train-labels-idx1-ubyte.gz")   # (60000,) uint8
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from annzoo.errors import AnnzooError

__all__ = ["IDX_DTYPES", "read_idx"]

# Element type codes of the IDX format, and their big-endian NumPy dtypes.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise AnnzooError(
            f"Could not read the IDX file {str(path)!r} ({type(error).__name__}: "
            f"{error})."
        ) from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise AnnzooError(
            f"IDX file {str(path)!r} must be a complete gzip file, but it could not "
            f"be decompressed ({type(error).__name__}: {error}), so it is truncated "
            "or damaged; download it again."
        ) from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file, gzip-compressed or not, into a NumPy array.

    Args:
        path: An IDX file such as MNIST's ``train-images-idx3-ubyte.gz`` (or
            the same file after ``gunzip``).

    Returns:
        An array of the file's shape, e.g. ``(60000, 28, 28)`` for MNIST's
        training images and ``(60000,)`` for its labels, in the file's element
        type (``uint8`` for MNIST) and this machine's byte order.

    Raises:
        AnnzooError: If the file is missing, is not an IDX file (its magic
            number), names an unknown element type, or holds more or fewer
            bytes than its header declares (a truncated download).

    Example:

    >>> images = read_idx("t10k-images-idx3-ubyte.gz")
    >>> images.shape, images.dtype
    ((10000, 28, 28), dtype('uint8'))
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise AnnzooError(
            f"`path` must be an IDX file such as train-images-idx3-ubyte.gz; "
            f"{str(path)!r} {what}."
        )
    data = _read_bytes(path)
    where = f"IDX file {str(path)!r}"
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise AnnzooError(
            f"{where} must start with the IDX magic number (two zero bytes, a type "
            f"code, a dimension count). Received: the bytes {data[:4].hex(' ')!r}, "
            "so it is not an IDX file (or a damaged one)."
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise AnnzooError(
            f"{where} must name an IDX element type ({known}) in its third byte. "
            f"Received: 0x{code:02X}."
        )
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise AnnzooError(
            f"{where} must declare at least one dimension, with a 4-byte size each "
            f"after the magic number. Received: {ndim} dimensions and "
            f"{len(data)} bytes."
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise AnnzooError(
            f"{where} must hold {expected} bytes of data after its header for shape "
            f"{shape} of {dtype.name}. Received: {len(data) - header} bytes, so "
            "the file is truncated or damaged; download it again."
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))
