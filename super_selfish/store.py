"""Checkpoint files: written atomically, read without executing code.

A run ``name`` (e.g. ``store/base``) has one checkpoint file ``store/base.pt``; its run
folder ``store/base/`` holds the history, TensorBoard events and older checkpoints kept by
:func:`keep`.
"""
from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict

import torch

from .errors import CheckpointError

FORMAT = 1


def checkpoint_path(name: str | os.PathLike) -> Path:
    """``store/base`` and ``store/base.pt`` both mean ``store/base.pt``."""
    path = Path(name)
    return path if path.suffix == ".pt" else path.with_name(path.name + ".pt")


def run_dir(name: str | os.PathLike) -> Path:
    """Folder beside the checkpoint for the run's history, logs and kept checkpoints."""
    path = checkpoint_path(name)
    return path.with_suffix("")


def write(payload: Dict[str, Any], name: str | os.PathLike) -> Path:
    """Save ``payload`` atomically: temporary file, fsync, rename. Readers never see half a file."""
    path = checkpoint_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(name: str | os.PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; anything unsafe or broken is refused."""
    path = checkpoint_path(name)
    if not path.exists():
        raise CheckpointError(f"No checkpoint at {str(path)!r}: train with supervise(..., "
                              f"name={str(path.with_suffix(''))!r}) first or check the name.")
    _verify_archive(path, name)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds objects other than tensors and plain data (for "
            f"example a pickled function) and was refused, since loading it could run code: "
            f"{exc}") from exc
    except Exception as exc:  # whatever torch trips over in a damaged archive
        raise _corrupted(path, name, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a super_selfish checkpoint (format "
                              f"{FORMAT} expected).")
    return payload


def _corrupted(path: Path, name: str | os.PathLike, reason: str) -> CheckpointError:
    return CheckpointError(f"Checkpoint {str(path)!r} is truncated or corrupted and cannot be "
                           f"read ({reason}). Use an older kept checkpoint from "
                           f"{str(run_dir(name) / 'checkpoints')!r} if there is one.")


def _verify_archive(path: Path, name: str | os.PathLike) -> None:
    """Checkpoints are zip archives (``torch.save``): check the structure and every CRC-32.

    torch's own reader checks neither, so a flipped byte in the tensor data would otherwise
    load silently, and a file that is not an archive would be misreported as unsafe.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as exc:  # BadZipFile, OSError, EOFError, zlib.error, ...
        raise _corrupted(path, name, f"not a complete zip archive: {exc}") from exc
    if damaged is not None:
        raise _corrupted(path, name, f"record {damaged!r} fails its CRC-32 check")


def keep(name: str | os.PathLike, epoch: int, keep_last: int, is_best: bool) -> None:
    """Copy the current checkpoint into the run folder; prune to the last ``keep_last``."""
    src = checkpoint_path(name)
    folder = run_dir(name) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    if keep_last > 0:
        _atomic_copy(src, folder / f"epoch_{epoch:04d}.pt")
        for old in sorted(folder.glob("epoch_*.pt"))[:-keep_last]:
            old.unlink()
    if is_best:
        _atomic_copy(src, folder / "best.pt")


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, dst)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
