"""Reports rebuilt from a run folder's files: figures/ (PNG + PDF), report.md and report.html."""

from bayesrobust.registry import import_submodules
from bayesrobust.report.build import build_report

import_submodules(__name__)  # each sections module registers its sections

__all__ = ["build_report"]
