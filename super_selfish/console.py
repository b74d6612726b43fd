"""Coloured status lines (colorama), printed by the main process only."""
from __future__ import annotations

import sys

from colorama import Fore, Style, just_fix_windows_console

from .distributed import is_main_process

just_fix_windows_console()


def _emit(colour: str, tag: str, message: str) -> None:
    if is_main_process():
        print(f"{colour}{Style.BRIGHT}[{tag}]{Style.RESET_ALL} {message}", file=sys.stderr,
              flush=True)


def info(message: str) -> None:
    _emit(Fore.CYAN, "super-selfish", message)


def success(message: str) -> None:
    _emit(Fore.GREEN, "done", message)


def warn(message: str) -> None:
    _emit(Fore.YELLOW, "warning", message)


NOTED: set = set()


def note_once(key: str, message: str) -> None:
    """An :func:`info` line shown once per process under ``key``, not once per image."""
    if key not in NOTED:
        NOTED.add(key)
        info(message)
