"""The local Ray of the sweep tests' Ray modules (started once per module: it costs seconds)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module (its start costs seconds); yields its address."""
    import logging

    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        ray.shutdown()
    # keep this process's idle workers (their torch import costs seconds) while the SIGTERM test's
    # subprocess runs its own: Ray reaps idle workers beyond num_cpus by default
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, _system_config={"num_workers_soft_limit": 6})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
