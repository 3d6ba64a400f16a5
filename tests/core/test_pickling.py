"""Decorated executors pickle by reference, so they work with process pools (peers' bug #29)."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from tests.core import executors_for_pickling as mod


def test_functions_and_methods_pickle_by_reference() -> None:
    assert pickle.loads(pickle.dumps(mod.work)) is mod.work
    bound = pickle.loads(pickle.dumps(mod.Worker("w").run))
    assert bound(1) == 2
    assert pickle.loads(pickle.dumps(mod.Worker.build))(5) == 4


def test_decorated_function_runs_in_a_process_pool(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: object) -> None:
    monkeypatch.setenv("INSTRUMENT_DISABLED", "1")  # the child only needs to run it
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        assert pool.submit(mod.work, "a", 21).result(timeout=60) == {"success": True,
                                                                      "value": 42}
