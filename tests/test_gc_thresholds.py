"""While the app serves, the garbage collector's young generation is large enough that
the objects streams allocate per token die before a collection sees them; the previous
thresholds come back when it stops (tests build many apps in one process)."""

from __future__ import annotations

import gc

from starlette.testclient import TestClient

from cadre.app import GC_THRESHOLDS, create_app
from cadre.settings import Settings


def test_the_app_raises_the_gc_thresholds_while_it_serves(settings: Settings):
    before = gc.get_threshold()
    with TestClient(create_app(settings)):
        serving = gc.get_threshold()

    assert serving == GC_THRESHOLDS != before
    assert gc.get_threshold() == before
