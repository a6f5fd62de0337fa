"""Storage for seed 002: grants and usage kept together, finishing releases once, and
lists whose query count does not grow with their rows."""

from __future__ import annotations

import pytest
from playhouse.test_utils import count_queries

from storage import executions as store
from storage import jobs
from storage.users import User


@pytest.fixture
def alice(database) -> str:
    User.create(id="usr_a", email="a@x.co", username="a", password_hash="x")
    return "usr_a"


def new_job(owner: str, depth: int = 0, count: int = 3, parent: str | None = None) -> jobs.Job:
    return jobs.create_job(
        owner=owner,
        task_description="t",
        worker_count=count,
        depth=depth,
        parent_job_id=parent,
        agent_name="echo",
        config={},
        inputs={},
        workspace_id=owner,
    )


def new_worker(job: jobs.Job, slot: int, status: str = "queued") -> jobs.Worker:
    execution = store.create_execution(
        owner=job.owner_id,
        agent_id="echo",
        agent_name="echo",
        task="t",
        mode="safe",
        inputs={},
        config={},
        provider="echo",
        model="echo",
        status=status,
    )
    return jobs.create_worker(
        owner=job.owner_id,
        job=job.id,
        slot=slot,
        workspace_id=job.owner_id,
        execution_id=execution.id,
    )


class TestGrants:
    def test_allocate_tops_up_and_never_lowers(self, alice: str):
        job = new_job(alice)
        assert jobs.allocate(alice, job.id, 0, 2, quota=10) == 2
        assert jobs.allocate(alice, job.id, 0, 1, quota=10) == 2
        assert jobs.allocate(alice, job.id, 0, 3, quota=10) == 3
        assert jobs.usage(alice) == {0: 3}

    def test_allocate_stops_at_the_quota_across_jobs(self, alice: str):
        first, second = new_job(alice), new_job(alice)
        assert jobs.allocate(alice, first.id, 2, 3, quota=5) == 3
        assert jobs.allocate(alice, second.id, 2, 3, quota=5) == 2
        assert jobs.usage(alice) == {2: 5}

    def test_shrink_and_release_give_back_to_the_usage(self, alice: str):
        job = new_job(alice)
        jobs.allocate(alice, job.id, 0, 3, quota=10)
        assert jobs.shrink(alice, job.id, 0, 1) == 2
        assert jobs.release(alice, job.id, 0) == 1
        assert jobs.release(alice, job.id, 0) == 0
        assert (jobs.held(job.id, 0), jobs.usage(alice)) == (0, {0: 0})

    def test_finishing_releases_once_and_then_grants_nothing(self, alice: str):
        job = new_job(alice)
        jobs.allocate(alice, job.id, 0, 3, quota=10)
        assert jobs.finish_job(job, "COMPLETED") is True
        assert jobs.finish_job(job, "CANCELED") is False  # already finished
        assert jobs.Job.get_by_id(job.id).status == "COMPLETED"
        assert jobs.usage(alice) == {0: 0}
        assert jobs.allocate(alice, job.id, 0, 3, quota=10) == 0

    def test_descendants_all_the_way_down(self, alice: str):
        root = new_job(alice)
        child = new_job(alice, 1, parent=root.id)
        grandchild = new_job(alice, 2, parent=child.id)
        assert [j.id for j in jobs.descendants(root)] == [child.id, grandchild.id]


class TestWorkers:
    def test_sync_follows_executions_and_leaves_finished_workers(self, alice: str):
        job = new_job(alice)
        workers = [new_worker(job, slot) for slot in range(3)]
        for worker, status in zip(workers, ("running", "paused", "cancelled"), strict=True):
            store.update_execution(worker.execution_id, status=status)
        assert jobs.sync_workers(owner_id=alice) == 3
        assert [w.status for w in jobs.workers_of(job.id)] == ["RUNNING", "PAUSED", "TERMINATED"]
        store.update_execution(workers[2].execution_id, status="completed")
        assert jobs.sync_workers() == 0  # a finished worker never changes again

    def test_counts_every_status(self, alice: str):
        job = new_job(alice)
        new_worker(job, 0)
        assert jobs.worker_counts(alice) == {
            "IDLE": 1,
            "RUNNING": 0,
            "PAUSED": 0,
            "COMPLETED": 0,
            "FAILED": 0,
            "TERMINATED": 0,
        }


class TestQueryCounts:
    @pytest.mark.parametrize("rows", [2, 20])
    def test_lists_cost_the_same_queries_at_any_size(self, alice: str, rows: int):
        for _ in range(rows):
            job = new_job(alice)
            new_worker(job, 0, status="running")
        jobs.sync_workers()
        with count_queries() as counter:
            jobs.list_jobs(alice, depth=None, status=None, parent_job_id=None, limit=1, offset=0)
        assert counter.count == 2  # the page, then the owner's kept count
        with count_queries() as counter:
            jobs.list_workers(alice, workspace_id=None, status=None, limit=1, offset=0)
        assert counter.count == 2
        with count_queries() as counter:
            assert jobs.sync_workers(owner_id=alice) == 0
        assert counter.count == 1
