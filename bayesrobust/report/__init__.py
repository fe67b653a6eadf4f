"""Reports rebuilt from a run folder's files: figures/ (PNG + PDF), report.md and report.html."""

from bayesrobust.report.build import build_report

__all__ = ["build_report"]
