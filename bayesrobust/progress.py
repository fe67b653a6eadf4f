"""Progress bars that stay quiet when output is not a terminal or ``--quiet`` was given."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_QUIET = {"value": bool(os.environ.get("BAYESROBUST_QUIET"))}


def set_quiet(quiet: bool) -> None:
    _QUIET["value"] = quiet


def progress_bar(iterable: Iterable[T], *, desc: str = "", enabled: bool = True, leave: bool = True, total=None):
    """A tqdm bar over ``iterable``, disabled when quiet, asked off, or stderr is not a TTY."""
    disabled = _QUIET["value"] or not enabled or not sys.stderr.isatty()
    return tqdm(iterable, desc=desc, disable=disabled, leave=leave, total=total, dynamic_ncols=True)
