"""pytest plugin (`-p gpu_tests_only`): keep only the tests that skip without CUDA, as benchmarks/gpu_check.py
runs them on a GPU machine. A test counts as one when a skipif mark of it gives a reason naming CUDA or a GPU."""

from __future__ import annotations


def _needs_gpu(item) -> bool:
    return any(
        "cuda" in str(mark.kwargs.get("reason", "")).lower() or "gpu" in str(mark.kwargs.get("reason", "")).lower()
        for mark in item.iter_markers("skipif")
    )


def pytest_collection_modifyitems(config, items) -> None:
    kept = [item for item in items if _needs_gpu(item)]
    config.hook.pytest_deselected(items=[item for item in items if not _needs_gpu(item)])
    items[:] = kept
