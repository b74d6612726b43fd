"""Checkpoint files: written atomically, read without executing code.

A run ``name`` (e.g. ``store/simclr-20261202-141503``) has one checkpoint file
``<name>.pt``; its run folder ``<name>/`` holds the history, TensorBoard events and, only when
asked for (``keep_last``, ``keep_best``), copies of older checkpoints made by :func:`keep`.
Every file is created with the same permissions (``0o666`` less the process umask, as
``open()`` does), so a run's files are readable by the same people.
"""

from __future__ import annotations

import os
import pickle
import secrets
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from .errors import CheckpointError

FORMAT = 1
DEFAULT_FOLDER = "store"


def checkpoint_path(name: str | os.PathLike) -> Path:
    """The checkpoint file of a run: ``store/base`` and ``store/base.pt`` mean ``store/base.pt``.

    Args:
        name: run name, with or without ``.pt``.

    Returns:
        The path ending in ``.pt``.
    """
    path = Path(name)
    return path if path.suffix == ".pt" else path.with_name(path.name + ".pt")


def run_dir(name: str | os.PathLike) -> Path:
    """Folder beside the checkpoint for the run's history, logs and kept checkpoints.

    Args:
        name: run name, with or without ``.pt``.

    Returns:
        ``<name>/`` (the checkpoint path without its suffix).
    """
    path = checkpoint_path(name)
    return path.with_suffix("")


def run_name(
    method: str, stamp: float, suffix: int = 1, folder: str | os.PathLike = DEFAULT_FOLDER
) -> str:
    """``<folder>/<method>-<YYYYmmdd-HHMMSS>`` for the local time ``stamp`` (seconds since the
    epoch), with ``-<suffix>`` appended when ``suffix`` > 1.

    Args:
        method: the method name.
        stamp: the time, in seconds since the epoch.
        suffix: 1 for none, else the number to append.
        folder: the folder of runs.

    Returns:
        The run name (no ``.pt``).
    """
    base = f"{os.fspath(folder)}/{method}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(stamp))}"
    return base if suffix <= 1 else f"{base}-{suffix}"


def new_run_name(
    method: str,
    stamp: Optional[float] = None,
    *,
    reserve: bool = True,
    folder: str | os.PathLike = DEFAULT_FOLDER,
) -> tuple[str, int, Optional[Path]]:
    """A run name no existing run uses: :func:`run_name` with the first free suffix.

    With ``reserve`` the run folder is created at once (``mkdir`` fails when it exists, so two
    processes never get the same name).

    Args:
        method: the method name.
        stamp: the time, in seconds since the epoch; default: now.
        reserve: create the run folder so no other process takes the name.
        folder: the folder of runs.

    Returns:
        ``(name, suffix, reserved folder or None)``.
    """
    stamp = time.time() if stamp is None else stamp
    suffix = 1
    while True:
        name = run_name(method, stamp, suffix, folder)
        if not checkpoint_path(name).exists():
            if not reserve:
                if not run_dir(name).exists():
                    return name, suffix, None
            else:
                try:
                    run_dir(name).mkdir(parents=True)
                    return name, suffix, run_dir(name)
                except FileExistsError:
                    pass
        suffix += 1


def latest_run(method: str, folder: str | os.PathLike = DEFAULT_FOLDER) -> Optional[str]:
    """The most recently written run of ``method``.

    Args:
        method: the method name.
        folder: the folder of runs.

    Returns:
        The run name of the newest ``<folder>/<method>-*.pt`` (by modification time, without
        ``.pt``), or None when there is none.
    """
    runs = sorted(Path(folder).glob(f"{method}-*.pt"), key=lambda p: p.stat().st_mtime)
    return str(runs[-1].with_suffix("")) if runs else None


def peek_method(name: str | os.PathLike) -> Optional[str]:
    """The method that wrote checkpoint ``name``, read without loading its tensors (memory
    map, no CRC check).

    Args:
        name: run name or checkpoint path.

    Returns:
        The ``method`` field, or None when the file is not a readable super_selfish checkpoint
        or names no method.
    """
    try:
        payload = torch.load(
            checkpoint_path(name), map_location="cpu", weights_only=True, mmap=True
        )
    except Exception:  # any unreadable file: the caller says so
        return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return None
    method = payload.get("method")
    return method if isinstance(method, str) else None


def write(payload: dict[str, Any], name: str | os.PathLike) -> Path:
    """Save ``payload`` atomically: temporary file, fsync, rename.

    Readers never see half a file; on any failure the temporary file is removed and the
    error propagates.

    Args:
        payload: tensors and plain data (``torch.save``-able, loadable with
            ``weights_only=True``).
        name: run name or checkpoint path; parent folders are created.

    Returns:
        The checkpoint path written.
    """
    path = checkpoint_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temporary(path)
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


def _new_temporary(path: Path) -> tuple[int, str]:
    """A new hidden file beside ``path``, created with the mode ``open()`` gives (0o666 less
    the umask; ``tempfile.mkstemp`` would give 0o600, unlike every other file of a run).
    """
    while True:
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp"))
        try:
            return os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666
            ), tmp
        except FileExistsError:
            continue


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(name: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; anything unsafe or broken is refused.

    Args:
        name: run name or checkpoint path.
        map_location: where tensors are loaded (as in ``torch.load``).

    Returns:
        The payload dictionary.

    Raises:
        CheckpointError: no such file, a damaged archive (failed CRC-32), objects other than
            tensors and plain data, or a file that is not a super_selfish checkpoint.
    """
    path = checkpoint_path(name)
    if not path.exists():
        raise CheckpointError(
            f"No checkpoint at {str(path)!r}: train with supervise(..., "
            f"name={str(path.with_suffix(''))!r}) first or check the name."
        )
    _verify_archive(path, name)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds objects other than tensors and plain data (for "
            f"example a pickled function) and was refused, since loading it could run code: "
            f"{exc}"
        ) from exc
    except Exception as exc:  # whatever torch trips over in a damaged archive
        raise _corrupted(path, name, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a super_selfish checkpoint (format {FORMAT} expected)."
        )
    return payload


def _corrupted(path: Path, name: str | os.PathLike, reason: str) -> CheckpointError:
    return CheckpointError(
        f"Checkpoint {str(path)!r} is truncated or corrupted and cannot be "
        f"read ({reason}). Use an older kept checkpoint from "
        f"{str(run_dir(name) / 'checkpoints')!r} if there is one."
    )


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
    """Copy the current checkpoint into ``<name>/checkpoints/``: as ``epoch_NNNN.pt`` when
    ``keep_last`` > 0 (pruned to the last ``keep_last``), as ``best.pt`` when ``is_best``.
    Nothing is written when neither applies (the default: one checkpoint per run).

    Args:
        name: run name or checkpoint path of the current checkpoint.
        epoch: the epoch number in the copy's file name.
        keep_last: how many epoch copies to keep (0: none).
        is_best: also copy to ``best.pt``.
    """
    if keep_last <= 0 and not is_best:
        return
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
