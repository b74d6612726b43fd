"""Status lines on stderr, printed by the main process only.

Colour (colorama) only when stderr is a terminal and the ``NO_COLOR`` environment variable
is unset or empty (https://no-color.org); logs, pipes and notebooks get plain text.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from colorama import Fore, Style, just_fix_windows_console

from .distributed import is_main_process

just_fix_windows_console()


def use_colour() -> bool:
    """Whether status lines are coloured now (decided per line: stderr may be redirected).

    Returns:
        True when ``NO_COLOR`` is unset or empty and stderr is an open terminal.
    """
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _emit(colour: str, tag: str, message: str) -> None:
    if is_main_process():
        label = f"{colour}{Style.BRIGHT}[{tag}]{Style.RESET_ALL}" if use_colour() else f"[{tag}]"
        print(f"{label} {message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    """Print ``message`` as a cyan ``[super-selfish]`` status line (main process only)."""
    _emit(Fore.CYAN, "super-selfish", message)


def success(message: str) -> None:
    """Print ``message`` as a green ``[done]`` line (main process only)."""
    _emit(Fore.GREEN, "done", message)


def warn(message: str) -> None:
    """Print ``message`` as a yellow ``[warning]`` line (main process only)."""
    _emit(Fore.YELLOW, "warning", message)


NOTED: set = set()


def note_once(key: str, message: str) -> None:
    """An :func:`info` line shown once per process under ``key``, not once per image.

    Args:
        key: identifies the note; a key already shown is skipped.
        message: the text.
    """
    if key not in NOTED:
        NOTED.add(key)
        info(message)


def error(message: str) -> None:
    """Print ``message`` as a red ``[error]`` line (main process only)."""
    _emit(Fore.RED, "error", message)


def _in_jupyter_kernel() -> bool:
    """True inside a Jupyter (IPython kernel) session, where widget bars can render."""
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except Exception:  # noqa: BLE001 - no usable IPython: not a notebook
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_bar(**options: Any) -> Any:
    """A tqdm progress bar that renders without warnings everywhere: tqdm's widget bar in a
    Jupyter kernel when ipywidgets is installed, its plain-text bar otherwise (in a terminal,
    and in a notebook without ipywidgets, where ``tqdm.auto`` warns "IProgress not found"
    before falling back to text).

    Args:
        **options: passed to the tqdm class (``total``, ``desc``, ``disable``, ...).

    Returns:
        The tqdm bar.
    """
    if _in_jupyter_kernel():
        try:
            import ipywidgets  # noqa: F401 - the widget bar needs it
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(**options)
        except ImportError:
            pass
    from tqdm.std import tqdm

    return tqdm(**options)
