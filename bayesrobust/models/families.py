"""What a config's ``arch`` names, without building anything: the family class (a registered
architecture, or the wrapper for a network's import path) and the capabilities it declares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bayesrobust.errors import ConfigError


def model_family(arch: str):
    """The class a config's ``arch`` builds: a registered family, or for an import path the wrapper."""
    from bayesrobust.models import MODELS
    from bayesrobust.models.base import is_import_path

    if is_import_path(arch):
        return MODELS.get("wrapped")
    if arch not in MODELS:
        raise ConfigError(f"unknown architecture {arch!r}; known: {', '.join(MODELS.names())}, "
                          "or a network's import path 'package.module:Class'")
    return MODELS.get(arch)


def reconstructing_models(config: Any) -> list[str]:
    """The configured models (``config.models``: section name → a section with ``arch``) whose family can
    reconstruct its inputs (the ``Reconstructs`` capability)."""
    from bayesrobust.models.base import Reconstructs

    sections: Mapping[str, Any] = config.models
    return [n for n, m in sections.items() if issubclass(model_family(m.arch), Reconstructs)]
