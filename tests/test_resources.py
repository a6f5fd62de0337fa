"""Seed 002's resources: per-user quotas per depth, usage, allocate and release, and
allocation under concurrency (never past the quota, on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from storage import jobs
from storage.db import database as db_proxy
from storage.jobs import Allocation, QuotaUsage
from storage.users import User
from tests.conftest import Account, assert_problem, register
from tests.jobs_helpers import TERMINAL, get_job, slow, submit, usage_at, wait_for_job, wait_until
from tests.test_jobs import token_with

SEED_QUOTAS = [
    {"depth": 0, "max_workers": 10},
    {"depth": 1, "max_workers": 8},
    {"depth": 2, "max_workers": 5},
    {"depth": 3, "max_workers": 3},
    {"depth": 4, "max_workers": 2},
    {"depth": 5, "max_workers": 1},
]


@pytest.fixture
def client(make_client):
    return make_client(supervisor_tick_seconds=0.1)


def allocate(client, account: Account, job_id: str, depth: int, count: int):
    return client.post(
        "/api/v1/resources/allocate",
        json={"job_id": job_id, "depth": depth, "worker_count": count},
        headers=account.headers,
    )


def release(client, account: Account, job_id: str, depth: int):
    return client.post(
        "/api/v1/resources/release",
        json={"job_id": job_id, "depth": depth},
        headers=account.headers,
    )


def cancel(client, account: Account, job_id: str) -> None:
    client.post(f"/api/v1/jobs/{job_id}/cancel", headers=account.headers)


class TestGetResourceQuotas:
    def test_the_seeds_quotas_by_default(self, client, alice: Account):
        reply = client.get("/api/v1/resources/quotas", headers=alice.headers)
        assert reply.status_code == 200
        assert reply.json() == {"quotas": SEED_QUOTAS}

    def test_quotas_are_a_setting(self, make_client):
        client = make_client(depth_quotas="4, 2")
        alice = register(client, "alice")
        reply = client.get("/api/v1/resources/quotas", headers=alice.headers)
        assert reply.json() == {
            "quotas": [{"depth": 0, "max_workers": 4}, {"depth": 1, "max_workers": 2}]
        }
        too_deep = client.post(
            "/api/v1/jobs/submit",
            json={"task_description": "t", "worker_count": 1, "depth": 2},
            headers=alice.headers,
        )
        assert assert_problem(too_deep, 422, "invalid_depth")["details"] == {
            "body.depth": "deeper than 1"
        }

    @pytest.mark.parametrize("value", ["", "10,x", "10,-1", "5,,1", ",".join(["1"] * 101)])
    def test_a_malformed_quota_list_is_refused_at_start(self, make_settings, value: str):
        with pytest.raises(ValueError, match="CADRE_DEPTH_QUOTAS"):
            make_settings(depth_quotas=value)

    def test_needs_the_resources_read_scope(self, client, alice: Account):
        assert_problem(client.get("/api/v1/resources/quotas"), 401)
        headers = token_with(client, alice, ["resources:write"])
        assert_problem(client.get("/api/v1/resources/quotas", headers=headers), 403)


class TestGetResourceUsage:
    def test_every_depth_zeros_included(self, client, alice: Account):
        reply = client.get("/api/v1/resources/usage", headers=alice.headers)
        assert reply.json() == {
            "usage": [
                {"depth": q["depth"], "allocated": 0, "available": q["max_workers"]}
                for q in SEED_QUOTAS
            ]
        }

    def test_usage_is_per_user(self, client, alice: Account, bob: Account):
        job = submit(client, alice, worker_count=7, inputs=slow())
        assert usage_at(client, alice, 0) == {"depth": 0, "allocated": 7, "available": 3}
        assert usage_at(client, bob, 0) == {"depth": 0, "allocated": 0, "available": 10}
        theirs = submit(client, bob, worker_count=10, inputs=slow())
        assert get_job(client, bob, theirs["id"])["granted"] == 10  # alice's 7 take nothing
        cancel(client, alice, job["id"])
        cancel(client, bob, theirs["id"])
        assert usage_at(client, alice, 0)["allocated"] == 0

    def test_needs_the_resources_read_scope(self, client, alice: Account):
        headers = token_with(client, alice, ["resources:write"])
        assert_problem(client.get("/api/v1/resources/usage", headers=headers), 403)


class TestAllocateResources:
    def test_idempotent_per_job_and_depth(self, client, alice: Account):
        job = submit(client, alice, worker_count=3, inputs=slow())
        for requested in (3, 2, 3, 9):
            reply = allocate(client, alice, job["id"], 0, requested)
            assert reply.status_code == 200, reply.text
            # never less than it holds, never more than its worker_count
            assert reply.json() == {
                "job_id": job["id"],
                "depth": 0,
                "requested": requested,
                "granted": 3,
            }
        assert usage_at(client, alice, 0)["allocated"] == 3
        cancel(client, alice, job["id"])

    def test_tops_up_never_past_what_is_available(self, client, alice: Account):
        hog = submit(client, alice, worker_count=2, depth=4, inputs=slow())  # quota 2
        waiting = submit(client, alice, worker_count=2, depth=4, inputs=slow())
        assert allocate(client, alice, waiting["id"], 4, 2).json()["granted"] == 0
        cancel(client, alice, hog["id"])
        granted = allocate(client, alice, waiting["id"], 4, 2).json()["granted"]
        assert granted == 2
        assert usage_at(client, alice, 4) == {"depth": 4, "allocated": 2, "available": 0}
        cancel(client, alice, waiting["id"])

    def test_a_finished_job_is_granted_nothing(self, client, alice: Account):
        job = submit(client, alice)
        wait_for_job(client, alice, job["id"], TERMINAL)
        assert allocate(client, alice, job["id"], 0, 1).json()["granted"] == 0
        assert usage_at(client, alice, 0)["allocated"] == 0

    def test_depth_must_be_the_jobs(self, client, alice: Account):
        job = submit(client, alice, inputs=slow())
        body = assert_problem(allocate(client, alice, job["id"], 1, 1), 422, "invalid_depth")
        assert body["details"] == {"body.depth": "the job's depth is 0"}
        cancel(client, alice, job["id"])

    def test_another_users_job_is_not_found(self, client, alice: Account, bob: Account):
        job = submit(client, alice, inputs=slow())
        assert_problem(allocate(client, bob, job["id"], 0, 1), 404, "job_not_found")
        assert_problem(allocate(client, alice, "j_000000000000", 0, 1), 404, "job_not_found")
        cancel(client, alice, job["id"])

    @pytest.mark.parametrize(
        "body",
        [{}, {"job_id": "j_1", "depth": 0}, {"job_id": "j_1", "depth": 0, "worker_count": 0}],
    )
    def test_bad_bodies_are_422(self, client, alice: Account, body):
        reply = client.post("/api/v1/resources/allocate", json=body, headers=alice.headers)
        assert_problem(reply, 422)

    def test_needs_the_resources_write_scope(self, client, alice: Account):
        job = submit(client, alice)
        headers = token_with(client, alice, ["resources:read"])
        reply = client.post(
            "/api/v1/resources/allocate",
            json={"job_id": job["id"], "depth": 0, "worker_count": 1},
            headers=headers,
        )
        assert_problem(reply, 403, "insufficient_scope")

    def test_concurrent_calls_never_grant_past_the_quota(self, client, alice: Account):
        hog = submit(client, alice, worker_count=10, inputs=slow())
        waiting = [submit(client, alice, worker_count=3, inputs=slow()) for _ in range(25)]
        cancel(client, alice, hog["id"])  # 10 free at once, for 25 jobs wanting 75
        calls = [job["id"] for job in waiting for _ in range(4)]  # 100 calls

        def call(job_id: str) -> int:
            reply = allocate(client, alice, job_id, 0, 3)
            assert reply.status_code == 200, reply.text
            return reply.json()["granted"]

        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(call, calls))
        held = {job["id"]: get_job(client, alice, job["id"])["granted"] for job in waiting}
        assert sum(held.values()) <= 10
        assert usage_at(client, alice, 0)["allocated"] == sum(held.values())
        for job in waiting:
            cancel(client, alice, job["id"])
        assert usage_at(client, alice, 0)["allocated"] == 0


class TestReleaseResources:
    def test_a_finished_job_has_released_its_grant(self, client, alice: Account):
        job = submit(client, alice, worker_count=2)
        wait_for_job(client, alice, job["id"], TERMINAL)
        reply = release(client, alice, job["id"], 0)
        assert reply.status_code == 200
        assert reply.json() == {"job_id": job["id"], "depth": 0, "released": 0}

    def test_releases_what_a_finished_job_still_holds(self, client, alice: Account):
        job = submit(client, alice, inputs=slow())
        cancel(client, alice, job["id"])
        # as if it still held 2 (a grant written by an older server, say)
        Allocation.update(granted=2).where(Allocation.job == job["id"]).execute()
        QuotaUsage.update(allocated=2).where(QuotaUsage.owner == alice.id).execute()
        assert release(client, alice, job["id"], 0).json()["released"] == 2
        assert usage_at(client, alice, 0)["allocated"] == 0

    def test_an_unfinished_job_is_409(self, client, alice: Account):
        job = submit(client, alice, inputs=slow())
        body = assert_problem(release(client, alice, job["id"], 0), 409, "job_unfinished")
        assert body["details"]["status"] in ("PENDING", "RUNNING")
        assert usage_at(client, alice, 0)["allocated"] == 1
        cancel(client, alice, job["id"])

    def test_errors(self, client, alice: Account, bob: Account):
        job = submit(client, alice)
        wait_for_job(client, alice, job["id"], TERMINAL)
        assert_problem(release(client, bob, job["id"], 0), 404, "job_not_found")
        assert_problem(release(client, alice, job["id"], 3), 422, "invalid_depth")
        reply = client.post(
            "/api/v1/resources/release", json={"job_id": job["id"]}, headers=alice.headers
        )
        assert_problem(reply, 422)
        headers = token_with(client, alice, ["resources:read"])
        reply = client.post(
            "/api/v1/resources/release", json={"job_id": job["id"], "depth": 0}, headers=headers
        )
        assert_problem(reply, 403)


class TestJobsReleaseWhatTheyHold:
    def test_on_completion_failure_and_cancel(self, client, alice: Account):
        done = submit(client, alice, worker_count=2)
        failed = submit(client, alice, worker_count=2, inputs={"echo": {"fail": "x"}})
        canceled = submit(client, alice, worker_count=2, inputs=slow())
        wait_for_job(client, alice, done["id"], TERMINAL)
        wait_for_job(client, alice, failed["id"], TERMINAL)
        cancel(client, alice, canceled["id"])
        wait_until(lambda: usage_at(client, alice, 0)["allocated"] == 0, what="all released")
        assert Allocation.select().where(Allocation.granted > 0).count() == 0


class TestAllocationStorage:
    """The transaction itself: 100 calls from 48 threads, each with its own connection
    (PostgreSQL's default max_connections is 100, some of them reserved)."""

    def test_100_concurrent_allocations_never_over_grant(self, database, monkeypatch):
        # widen the window between reading the usage and writing it, where a race would be
        read_held = jobs.held

        def slow_held(job_id: str, depth: int) -> int:
            time.sleep(0.002)
            return read_held(job_id, depth)

        monkeypatch.setattr(jobs, "held", slow_held)
        User.create(id="usr_a", email="a@x.co", username="a", password_hash="x")
        ids = [
            jobs.create_job(
                owner="usr_a",
                task_description="t",
                worker_count=3,
                depth=0,
                agent_name="echo",
                config={},
                inputs={},
                workspace_id="usr_a",
            ).id
            for _ in range(50)
        ]
        threads = 48
        start = threading.Barrier(threads)
        granted: list[int] = []

        def calls(mine: list[str]) -> None:
            start.wait()
            try:
                for job_id in mine:
                    granted.append(jobs.allocate("usr_a", job_id, 0, 3, quota=10))
            finally:
                db_proxy.close()

        work = [ids[i % 50] for i in range(100)]
        pool = [threading.Thread(target=calls, args=(work[n::threads],)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        held = {job_id: jobs.held(job_id, 0) for job_id in ids}
        assert sum(held.values()) == 10  # all of it, and not one more
        assert jobs.usage("usr_a") == {0: 10}
        assert all(value <= 3 for value in held.values())
        assert len(granted) == 100
