"""While the app serves, the garbage collector's young generation is large enough that
the objects streams allocate per token die before a collection sees them; the previous
thresholds come back when it stops (tests build many apps in one process). The first app
a process serves freezes what was built before it (it lives as long as the process);
later apps in the same process (tests) leave their objects to the collector."""

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


def test_only_the_first_app_of_a_process_freezes_its_startup_objects(settings: Settings):
    with TestClient(create_app(settings)):  # the first app of this process, or a later one
        pass
    frozen = gc.get_freeze_count()
    with TestClient(create_app(settings)):
        serving = gc.get_freeze_count()

    assert frozen > 0  # the first app's objects
    assert serving == frozen == gc.get_freeze_count()
