"""Ray for the toolkit's parallel work (a sweep's trials, a deep ensemble's members): imported only when
asked for, started on this machine or joined, stopped when the block that started it ends."""

from __future__ import annotations

from contextlib import contextmanager

from bayesrobust.errors import BayesRobustError, ConfigError


class RayMissing(BayesRobustError):
    """``--executor ray`` without Ray installed."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayMissing("the ray executor needs Ray: pip install 'bayesrobust[distributed]' (or pip install ray); "
                         "--executor serial runs the trials one after another in this process") from None
    return ray


@contextmanager
def ray_session(address: str | None = None):
    """Ray, started on this machine's cores (``address`` None) or joined (``auto``, ``ray://…``) for the
    block, and stopped afterwards when this block started it; a Ray already initialised is used as it is."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            # "local": a new Ray on this machine's cores even when a cluster is already running here
            # (plain ray.init() would join it and queue behind its work)
            ray.init(address=address or "local", include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                     configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - Ray's own start-up errors vary by version and platform
            raise ConfigError(f"Ray could not start{' at ' + address if address else ''}: {exc}") from None
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
