"""One way to register: each thing registers itself in its own module with a literal name, and the
package's registry finds it without importing anything until a name is asked for."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

from bayesrobust.registry import Registry, declared_names

REGISTRIES = {  # every registry that finds its entries in a package: (module, attribute)
    "bayesrobust.models": ("bayesrobust.models.base", "MODELS"),
    "bayesrobust.attacks": ("bayesrobust.attacks.base", "ATTACKS"),
    "bayesrobust.data": ("bayesrobust.data.base", "DATASETS"),
    "bayesrobust.detection": ("bayesrobust.detection.base", "DETECTORS"),
    "bayesrobust.analysis": ("bayesrobust.analysis", "ANALYSES"),
    "bayesrobust.suites": ("bayesrobust.suites.registry", "SUITES"),
    "bayesrobust.report": ("bayesrobust.report.sections", "SECTIONS"),
}


@pytest.mark.parametrize("package", sorted(REGISTRIES))
def test_the_names_read_from_the_sources_are_what_the_modules_register(package):
    """The registry's reading of the sources (no import) agrees with what importing every module of the
    package registers: nothing is missed, nothing is named that is not there."""
    module, attribute = REGISTRIES[package]
    registry = getattr(importlib.import_module(module), attribute)
    assert registry.package is None or registry.package == package
    declared = sorted(n for names in declared_names(package).values() for n in names)
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{info.name}")
    assert declared == registry.names()
    for name in registry.names():
        registry.get(name)  # every declared name loads


def test_a_heavy_family_is_imported_only_when_asked_for():
    code = ("import sys; from bayesrobust.models import MODELS; names = MODELS.names(); "
            "assert 'gpdnn' in names and 'vae' in names, names; "
            "assert 'gpytorch' not in sys.modules and 'bayesrobust.models.gpdnn' not in sys.modules; "
            "MODELS.get('gpdnn'); assert 'gpytorch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_registry_refuses_a_name_twice_and_names_what_it_knows():
    registry: Registry[int] = Registry("thing")
    registry.add("one", 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("one", 2)
    from bayesrobust.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown thing 'two'; known: one"):
        registry.get("two")
