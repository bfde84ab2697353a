"""Atomic file writes: the only way annzoo puts bytes on disk.

Every file is written to a temporary file in the same directory, flushed and
fsynced, then renamed over the target, and the directory entry is fsynced. A
process killed at any moment leaves either the previous file or the new one,
never a half-written one. A directory (a SavedModel) is built the same way,
as a temporary sibling swapped into place (:func:`atomic_directory`).
Temporaries carry the ``.annzoo-tmp-`` prefix so :func:`clean_temporaries`
can remove the ones a killed process left behind.

One writer per directory: :func:`lock_directory` takes the advisory lock a
run or search directory is written under (see its docstring).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

from annzoo.errors import CheckpointError
from annzoo.speedups import host_initialization

try:  # POSIX; elsewhere (Windows) `lock_directory` locks nothing
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = [
    "TMP_PREFIX",
    "atomic_directory",
    "atomic_path",
    "exchange_paths",
    "write_bytes",
    "write_text",
    "write_json",
    "save_model",
    "clean_temporaries",
    "DirectoryLock",
    "lock_directory",
    "lock_holder",
]

TMP_PREFIX = ".annzoo-tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files and mkdtemp 0700 directories; give the results
# the permissions any other new file or directory gets under the umask.
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write; renames it to ``path`` on success.

    The temporary path ends with the same suffix as ``path`` (Keras checks
    that a model file ends in ``.keras`` and weights in ``.weights.h5``). On
    an exception the temporary is removed and ``path`` is left untouched.
    """
    target = Path(path)
    directory = target.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Keras wants weights files to end in ".weights.h5", not just ".h5".
        double = target.name.endswith(".weights.h5")
        suffix = ".weights.h5" if double else target.suffix
        stem = target.name[: -len(suffix)] if suffix else target.name
        fd, tmp = tempfile.mkstemp(
            prefix=f"{TMP_PREFIX}{stem}-", suffix=suffix, dir=directory
        )
        os.close(fd)
        os.chmod(tmp, _FILE_MODE)
    except OSError as error:
        raise CheckpointError(
            f"Cannot write {str(target)!r}: {error.strerror or error}. Check that "
            "the directory exists, is writable and has free space."
        ) from error
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, target)
        fsync_dir(directory)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise CheckpointError(
            f"Cannot write {str(target)!r}: {error.strerror or error}. The previous "
            "version of the file, if any, is intact."
        ) from error
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def fsync_tree(root: str | os.PathLike) -> None:
    """Flushes every file under ``root`` and every directory entry to disk."""
    for directory, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(directory))


def exchange_paths(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Atomically swaps the names of two existing paths; False where the
    system cannot.

    Linux's ``renameat2(RENAME_EXCHANGE)`` (glibc 2.28 on), called through
    ctypes since Python has no binding for it: after it, ``first`` names
    what ``second`` named and the other way round, with no moment at which
    either name is missing. Elsewhere (another system, an older C library, a
    filesystem without the flag) nothing is changed and False is returned.

    Raises:
        OSError: the swap was possible but failed (a missing path, no
            permission).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(
        at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange
    )
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # a filesystem without RENAME_EXCHANGE
    raise OSError(code, os.strerror(code), str(second))


def replace_directory(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Moves the complete directory ``new`` to ``target``, replacing any old one.

    Where the kernel can swap two names in one step (`exchange_paths`), a
    crash leaves ``target`` old or new, never missing. Elsewhere the old
    directory is renamed aside first: a crash between the two renames leaves
    it complete under a ``.annzoo-tmp-`` name.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
    elif exchange_paths(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now names the old one
    else:
        aside = new.with_name(new.name + "-old")
        os.rename(target, aside)
        try:
            os.rename(new, target)
        except OSError:
            os.rename(aside, target)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary directory to fill; swaps it in as ``path`` on success.

    The directory is a ``.annzoo-tmp-`` sibling of ``path``; when the block
    ends without an exception its files are synced and it replaces ``path``
    whole (`replace_directory`). On an exception it is removed and ``path``
    is left as it was.

    Raises:
        CheckpointError: the directory cannot be created or swapped in (the
            previous one, if any, is then intact).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(
            tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}-", dir=target.parent)
        )
        os.chmod(tmp, _DIR_MODE)
    except OSError as error:
        raise CheckpointError(
            f"Cannot write {str(target)!r}: {error.strerror or error}. Check that "
            "the directory is writable and has free space."
        ) from error
    try:
        yield tmp
        fsync_tree(tmp)
        replace_directory(tmp, target)
    except OSError as error:
        raise CheckpointError(
            f"Cannot write {str(target)!r}: {error.strerror or error}. The "
            "previous version, if any, is intact."
        ) from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already on success


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_json(path: str | os.PathLike, data: Any) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True, default=_jsonable)
    return write_text(path, text + "\n")


def save_model(model, path: str | os.PathLike) -> Path:
    """``model.save`` through a temporary ``.keras`` file and a rename."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


MANIFEST = "manifest.json"


def file_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: str | os.PathLike) -> Path:
    """Records the SHA-256 and size of every file in ``directory`` (not below).

    Written last, after everything it lists: the files a finished run
    directory held when it was finished, checked by `load_model` and
    `check_file` whenever a file listed there is read back.
    """
    directory = Path(directory)
    files = {
        p.name: {"sha256": file_digest(p), "bytes": p.stat().st_size}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(TMP_PREFIX)
    }
    return write_json(directory / MANIFEST, {"files": files})


def check_file(path: str | os.PathLike, sha256: str | None = None) -> Path:
    """Checks ``path`` against ``sha256`` or its directory's manifest.

    A file of a finished run (its directory holds ``results.json`` and no
    resume state) is refused when the manifest is missing: deleting the
    manifest must not turn the checks off without a word.

    Raises:
        CheckpointError: naming the file and what is wrong with it (missing,
            truncated, or changed since it was written), or the missing
            manifest.
    """
    path = Path(path)
    if sha256 is None:
        try:
            listed = json.loads((path.parent / MANIFEST).read_text("utf-8"))["files"]
        except FileNotFoundError:
            listed = {}
            finished = (path.parent / "results.json").is_file() and not (
                path.parent / "state" / "progress.json"
            ).is_file()
            if finished:
                # A finished run without its manifest: checking nothing would
                # pass any damage silently.
                raise CheckpointError(
                    f"{str(path.parent / MANIFEST)!r} is missing from a finished run "
                    f"(it holds results.json), so {path.name} cannot be checked "
                    "against what annzoo wrote; restore manifest.json from a copy "
                    "of the run, or load the file with keras.saving.load_model "
                    "if you trust it."
                ) from None
        except (OSError, ValueError, KeyError, TypeError):
            raise CheckpointError(
                f"{str(path.parent / MANIFEST)!r} is unreadable (truncated or "
                f"corrupt), so {path.name} cannot be checked."
            ) from None
        entry = listed.get(path.name)
        sha256 = entry.get("sha256") if isinstance(entry, dict) else None
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} does not exist.")
    if sha256 is not None:
        found = file_digest(path)
        if found != sha256:
            raise CheckpointError(
                f"{str(path)!r} is damaged: its SHA-256 is {found[:12]}... but "
                f"{sha256[:12]}... was recorded when annzoo wrote it (the file was "
                "truncated or changed afterwards)."
            )
    return path


def load_model(path: str | os.PathLike, *, sha256: str | None = None, **kwargs):
    """``keras.saving.load_model`` after `check_file`; errors name the file."""
    path = check_file(path, sha256)
    try:
        # Keras fills every variable before loading its value: on JAX from
        # NumPy, not one XLA program per weight shape.
        with host_initialization():
            return keras.saving.load_model(path, **kwargs)
    except Exception as error:  # zipfile.BadZipFile, OSError, ValueError...
        raise CheckpointError(
            f"{str(path)!r} is not a loadable Keras model "
            f"({type(error).__name__}: {str(error)[:200]})."
        ) from None


def clean_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Removes temporaries a killed process left in ``directory``."""
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        # Deepest first, so a stray directory inside a stray directory goes too.
        strays = sorted(directory.rglob(f"{TMP_PREFIX}*"), key=lambda p: -len(p.parts))
        for stray in strays:
            with contextlib.suppress(OSError):
                if stray.is_dir() and not stray.is_symlink():
                    shutil.rmtree(stray)
                else:
                    stray.unlink()
                removed.append(stray)
    return removed


class DirectoryLock:
    """The lock `lock_directory` took; `release` (or leaving a ``with``
    block) gives it back, and so does the process ending in any way."""

    def __init__(self, path: Path, fd: int | None):
        self.path = path
        self._fd = fd

    @property
    def held(self) -> bool:
        """False once released, or where the system cannot lock at all."""
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_directory(path: str | os.PathLike) -> DirectoryLock | None:
    """Takes the exclusive advisory lock of the existing directory ``path``,
    without waiting; None when another holder has it.

    The lock is ``flock(2)`` on the directory itself (no lock file, so a run
    directory holds nothing but the run): it belongs to this open descriptor,
    so a second `lock_directory` of the same path fails even in the same
    process, and the kernel drops it when the descriptor is closed, which a
    process killed in any way (``kill -9`` included) does. A lock is
    therefore never stale and never needs removing by hand. It is advisory:
    it keeps out annzoo processes, which all take it before they choose,
    resume or write a run or search directory, not other programs.

    Where the system has no ``flock`` (Windows) or the filesystem refuses it
    on a directory, a lock that holds nothing is returned
    (`DirectoryLock.held` is False): the run goes on as before locks.

    Raises:
        CheckpointError: ``path`` cannot be opened (missing, not a directory,
            no permission).
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as error:
        raise CheckpointError(
            f"Cannot open {str(path)!r} to lock it: {error.strerror or error}. "
            "Check that it is a directory you can read and write."
        ) from error
    if fcntl is None:  # pragma: no cover
        os.close(fd)
        return DirectoryLock(path, None)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:  # a filesystem that cannot lock directories
        os.close(fd)
        return DirectoryLock(path, None)
    return DirectoryLock(path, fd)


def lock_holder(path: str | os.PathLike) -> int | None:
    """The id of the process holding `lock_directory`'s lock on ``path``;
    None when it is free or the system does not say (``/proc/locks`` is
    Linux's)."""
    try:
        info = os.stat(path)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}"
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2154622 0 EOF"; waiters have "->"
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        dev, _, inode = fields[5].rpartition(":")
        if inode == str(info.st_ino) and dev.lower() == device:
            return int(fields[4])
    return None
