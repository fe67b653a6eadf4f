"""Progress bars: live on a terminal; in a log file (stderr redirected, e.g. a batch job) one line per
bar at most every ``LOG_INTERVAL`` seconds, each on its own line; none with ``--quiet``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_QUIET = {"value": bool(os.environ.get("BAYESROBUST_QUIET"))}
LOG_INTERVAL = 60.0  # seconds between a bar's lines in a log file


class _LogLines:
    """A file-like wrapper that turns tqdm's carriage-return redraws into whole lines."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def set_quiet(quiet: bool) -> None:
    _QUIET["value"] = quiet


@contextmanager
def quiet_unless(show: bool) -> Iterator[None]:
    """No progress bar anywhere within the block unless ``show`` (``run_experiment(progress=False)``
    silences the suites' bars too, not only training's); the previous setting afterwards."""
    saved = _QUIET["value"]
    _QUIET["value"] = saved or not show
    try:
        yield
    finally:
        _QUIET["value"] = saved


def progress_bar(iterable: Iterable[T], *, desc: str = "", enabled: bool = True, leave: bool = True, total=None,
                 delay: float = 0.0):
    """A tqdm bar over ``iterable``, disabled when quiet or asked off, and when there is nothing to do (an
    empty "0it" bar is noise); sparse whole lines when stderr is not a terminal; with ``delay``, shown
    only once the work has run that many seconds."""
    empty = (total == 0) if total is not None else (hasattr(iterable, "__len__") and len(iterable) == 0)
    disabled = _QUIET["value"] or not enabled or empty
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, disable=disabled, leave=leave, total=total, dynamic_ncols=True, delay=delay)
    return tqdm(iterable, desc=desc, disable=disabled, leave=True, total=total, file=_LogLines(sys.stderr),
                mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL, ascii=True, ncols=100, delay=delay)
