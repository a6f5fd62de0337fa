"""Seed 002's jobs over HTTP: submit, run to the end, list, read, cancel as a tree."""

from __future__ import annotations

import re
import time

import pytest

from storage.executions import Execution
from storage.jobs import Job, Worker
from tests.conftest import Account, assert_problem, register
from tests.jobs_helpers import (
    TERMINAL,
    get_job,
    slow,
    submit,
    usage_at,
    wait_for_job,
    wait_until,
)

SEED_SCOPES = [
    "supervisor:read",
    "supervisor:write",
    "jobs:read",
    "jobs:write",
    "resources:read",
    "resources:write",
]


@pytest.fixture
def client(make_client):
    return make_client(supervisor_tick_seconds=0.1)


def token_with(client, account: Account, scopes: list[str]) -> dict[str, str]:
    reply = client.post(
        "/api/v1/auth/login",
        json={"username": account.username, "password": account.password, "scopes": scopes},
    )
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


class TestSubmitJob:
    def test_reply_has_the_seed_shape_and_is_pending(self, client, alice: Account):
        reply = client.post(
            "/api/v1/jobs/submit",
            json={
                "task_description": "Implement user authentication system",
                "worker_count": 3,
                "depth": 0,
                "parent_job_id": None,
            },
            headers=alice.headers,
        )
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert re.fullmatch(r"j_[0-9a-f]{12}", body["id"])
        assert body["status"] == "PENDING"
        assert body["task_description"] == "Implement user authentication system"
        assert (body["worker_count"], body["depth"], body["parent_job_id"]) == (3, 0, None)
        assert body["agent_id"] is None and body["agent_name"] == "echo"
        assert body["workspace_id"] == alice.id
        assert body["created_at"] and body["updated_at"]
        stored = Job.get_by_id(body["id"])
        assert stored.owner_id == alice.id and stored.worker_count == 3

    def test_submission_takes_workers_from_the_depth_quota(self, client, alice: Account):
        job = submit(client, alice, worker_count=3, inputs=slow())
        assert usage_at(client, alice, 0) == {"depth": 0, "allocated": 3, "available": 7}
        client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)

    def test_child_depth_must_be_its_parents_plus_one(self, client, alice: Account):
        parent = submit(client, alice, inputs=slow())
        for depth in (0, 2):
            reply = client.post(
                "/api/v1/jobs/submit",
                json={
                    "task_description": "t",
                    "worker_count": 1,
                    "depth": depth,
                    "parent_job_id": parent["id"],
                },
                headers=alice.headers,
            )
            body = assert_problem(reply, 422, "invalid_depth")
            assert body["details"] == {"body.depth": "must be 1, its parent's + 1"}
        child = submit(client, alice, depth=1, parent_job_id=parent["id"])
        assert child["parent_job_id"] == parent["id"] and child["depth"] == 1
        client.post(f"/api/v1/jobs/{parent['id']}/cancel", headers=alice.headers)

    def test_parent_must_be_one_of_the_callers_jobs(self, client, alice: Account, bob: Account):
        theirs = submit(client, bob, inputs=slow())
        for parent_id in (theirs["id"], "j_000000000000"):
            reply = client.post(
                "/api/v1/jobs/submit",
                json={
                    "task_description": "t",
                    "worker_count": 1,
                    "depth": 1,
                    "parent_job_id": parent_id,
                },
                headers=alice.headers,
            )
            assert_problem(reply, 404, "job_not_found")
        assert Job.select().where(Job.owner == alice.id).count() == 0

    def test_a_finished_parent_takes_no_children(self, client, alice: Account):
        parent = submit(client, alice)
        wait_for_job(client, alice, parent["id"], TERMINAL)
        reply = client.post(
            "/api/v1/jobs/submit",
            json={
                "task_description": "t",
                "worker_count": 1,
                "depth": 1,
                "parent_job_id": parent["id"],
            },
            headers=alice.headers,
        )
        assert_problem(reply, 409, "parent_job_finished")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"worker_count": 11, "depth": 0}, "body.worker_count"),  # CADRE_MAX_JOB_WORKERS
            ({"worker_count": 0, "depth": 0}, "body.worker_count"),
            ({"worker_count": 1, "depth": 6}, "body.depth"),  # deeper than the quotas
            ({"worker_count": 1, "depth": -1}, "body.depth"),
            ({"worker_count": 1}, "body.depth"),
            ({"depth": 0}, "body.worker_count"),
        ],
    )
    def test_bounds_are_422_naming_the_field(self, client, alice: Account, body, field):
        reply = client.post(
            "/api/v1/jobs/submit", json={"task_description": "t", **body}, headers=alice.headers
        )
        assert field in assert_problem(reply, 422)["details"]

    def test_task_is_required_and_bounded(self, client, alice: Account):
        for task in (None, "", "x" * 65537):
            body = {"worker_count": 1, "depth": 0}
            if task is not None:
                body["task_description"] = task
            reply = client.post("/api/v1/jobs/submit", json=body, headers=alice.headers)
            assert "body.task_description" in assert_problem(reply, 422)["details"]

    def test_worker_count_bound_is_a_setting(self, make_client):
        client = make_client(max_job_workers=2)
        alice = register(client, "alice")
        reply = client.post(
            "/api/v1/jobs/submit",
            json={"task_description": "t", "worker_count": 3, "depth": 0},
            headers=alice.headers,
        )
        assert assert_problem(reply, 422)["details"] == {"body.worker_count": "more than 2"}

    def test_runs_the_named_agent(self, client, alice: Account, bob: Account):
        client.post("/api/v1/agents", json={"name": "coder", "model": "m1"}, headers=alice.headers)
        job = submit(client, alice, agent_id="coder", worker_count=2)
        assert job["agent_name"] == "coder" and job["agent_id"].startswith("agent_")
        done = wait_for_job(client, alice, job["id"], TERMINAL)
        assert done["status"] == "COMPLETED"
        for worker in done["workers"]:
            execution = Execution.get_by_id(worker["execution_id"])
            assert (execution.agent_name, execution.model, execution.mode) == (
                "coder",
                "m1",
                "safe",
            )
        reply = client.post(
            "/api/v1/jobs/submit",
            json={"task_description": "t", "worker_count": 1, "depth": 0, "agent_id": "coder"},
            headers=bob.headers,
        )
        assert_problem(reply, 404, "agent_not_found")

    def test_needs_the_jobs_write_scope(self, client, alice: Account):
        body = {"task_description": "t", "worker_count": 1, "depth": 0}
        assert_problem(client.post("/api/v1/jobs/submit", json=body), 401)
        headers = token_with(client, alice, ["jobs:read"])
        assert_problem(client.post("/api/v1/jobs/submit", json=body, headers=headers), 403)
        assert Job.select().count() == 0


class TestJobRuns:
    def test_runs_to_completed_with_every_workers_result_and_cost(self, client, alice: Account):
        job = submit(client, alice, "Build React dashboard", worker_count=3)
        done = wait_for_job(client, alice, job["id"], TERMINAL)
        assert done["status"] == "COMPLETED" and done["error"] is None
        assert done["completed_at"] is not None
        assert len(done["workers"]) == 3
        assert {w["status"] for w in done["workers"]} == {"COMPLETED"}
        assert [r["output"] for r in done["results"]] == ["Build React dashboard"] * 3
        assert {r["worker_id"] for r in done["results"]} == {w["id"] for w in done["workers"]}
        assert done["cost"] == 0 and done["granted"] == 0
        assert usage_at(client, alice, 0)["allocated"] == 0  # released when it finished

    def test_cost_sums_the_workers_executions(self, client, alice: Account):
        job = submit(client, alice, worker_count=2)
        done = wait_for_job(client, alice, job["id"], TERMINAL)
        ids = [w["execution_id"] for w in done["workers"]]
        Execution.update(cost_usd=0.25).where(Execution.id.in_(ids)).execute()
        assert get_job(client, alice, job["id"])["cost"] == pytest.approx(0.5)

    def test_is_running_while_its_workers_run(self, client, alice: Account):
        job = submit(client, alice, worker_count=2, inputs=slow())
        running = wait_for_job(client, alice, job["id"], ("RUNNING",))
        assert {w["status"] for w in running["workers"]} <= {"IDLE", "RUNNING"}
        assert running["granted"] == 2
        client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)

    def test_runs_no_more_workers_at_once_than_its_grant(self, client, alice: Account):
        # depth 5's quota is 1: three workers run one after another
        job = submit(client, alice, worker_count=3, depth=5, inputs=slow(tokens=10, delay_ms=20))
        most = 0
        deadline = time.monotonic() + 20
        while True:
            body = get_job(client, alice, job["id"])
            active = [w for w in body["workers"] if w["status"] in ("IDLE", "RUNNING", "PAUSED")]
            most = max(most, len(active))
            if body["status"] in TERMINAL:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert body["status"] == "COMPLETED" and most == 1
        assert len(body["results"]) == 3

    def test_a_waiting_job_starts_when_capacity_frees_up(self, client, alice: Account):
        first = submit(client, alice, depth=5, inputs=slow())
        second = submit(client, alice, depth=5)
        time.sleep(0.5)
        waiting = get_job(client, alice, second["id"])
        assert (waiting["status"], waiting["granted"], waiting["workers"]) == ("PENDING", 0, [])
        client.post(f"/api/v1/jobs/{first['id']}/cancel", headers=alice.headers)
        assert wait_for_job(client, alice, second["id"], TERMINAL)["status"] == "COMPLETED"

    def test_a_failing_worker_fails_the_job(self, client, alice: Account):
        job = submit(client, alice, worker_count=2, inputs={"echo": {"fail": "boom"}})
        done = wait_for_job(client, alice, job["id"], TERMINAL)
        assert done["status"] == "FAILED"
        assert "boom" in done["error"]
        assert "FAILED" in {w["status"] for w in done["workers"]}
        assert usage_at(client, alice, 0)["allocated"] == 0

    def test_failed_workers_are_retried_as_the_setting_says(self, make_client):
        client = make_client(supervisor_tick_seconds=0.1, job_worker_retries=1)
        alice = register(client, "alice")
        job = submit(client, alice, inputs={"echo": {"fail": "boom"}})
        done = wait_for_job(client, alice, job["id"], TERMINAL)
        assert done["status"] == "FAILED"
        assert [(w["attempt"], w["status"]) for w in done["workers"]] == [
            (0, "FAILED"),
            (1, "FAILED"),
        ]

    def test_a_parent_completes_only_after_its_children(self, client, alice: Account):
        parent = submit(client, alice)
        child = submit(
            client, alice, depth=1, parent_job_id=parent["id"], inputs=slow(tokens=100, delay_ms=20)
        )
        wait_until(
            lambda: (
                [r["status"] for r in get_job(client, alice, parent["id"])["results"]]
                == ["COMPLETED"]
            ),
            what="parent worker completed",
        )
        assert get_job(client, alice, parent["id"])["status"] in ("PENDING", "RUNNING")
        assert wait_for_job(client, alice, child["id"], TERMINAL)["status"] == "COMPLETED"
        assert wait_for_job(client, alice, parent["id"], TERMINAL)["status"] == "COMPLETED"

    def test_a_failing_child_fails_its_parent(self, client, alice: Account):
        parent = submit(client, alice, inputs=slow())
        child = submit(
            client, alice, depth=1, parent_job_id=parent["id"], inputs={"echo": {"fail": "x"}}
        )
        assert wait_for_job(client, alice, child["id"], TERMINAL)["status"] == "FAILED"
        done = wait_for_job(client, alice, parent["id"], TERMINAL)
        assert done["status"] == "FAILED" and child["id"] in done["error"]
        # its running worker is cancelled as the job fails; a cancel ends a run at its next
        # step, so the worker may show RUNNING for a moment after the job's status changed
        wait_until(
            lambda: (
                {w["status"] for w in get_job(client, alice, parent["id"])["workers"]}
                == {"TERMINATED"}
            ),
            what="parent worker terminated",
        )


class TestListJobs:
    def test_filters_pages_and_only_the_callers(self, client, alice: Account, bob: Account):
        root = submit(client, alice, inputs=slow())
        kids = [
            submit(client, alice, depth=1, parent_job_id=root["id"], inputs=slow())
            for _ in range(3)
        ]
        submit(client, bob)
        reply = client.get("/api/v1/jobs", headers=alice.headers)
        body = reply.json()
        assert reply.status_code == 200
        assert (body["total"], body["limit"], body["offset"], body["next"]) == (4, 50, 0, None)
        assert [j["id"] for j in body["jobs"]] == [k["id"] for k in reversed(kids)] + [root["id"]]
        by_depth = client.get("/api/v1/jobs?depth=1", headers=alice.headers).json()
        assert by_depth["total"] == 3
        by_parent = client.get(f"/api/v1/jobs?parent_job_id={root['id']}", headers=alice.headers)
        assert {j["id"] for j in by_parent.json()["jobs"]} == {k["id"] for k in kids}
        client.post(f"/api/v1/jobs/{root['id']}/cancel", headers=alice.headers)
        canceled = client.get("/api/v1/jobs?status=CANCELED", headers=alice.headers).json()
        assert canceled["total"] == 4
        first = client.get("/api/v1/jobs?limit=2&depth=1", headers=alice.headers).json()
        assert len(first["jobs"]) == 2 and first["total"] == 3
        assert "depth=1" in first["next"] and "after=" in first["next"]
        rest = client.get(first["next"], headers=alice.headers).json()
        assert [j["id"] for j in rest["jobs"]] == [kids[0]["id"]] and rest["next"] is None
        offset = client.get("/api/v1/jobs?limit=2&offset=2", headers=alice.headers).json()
        assert len(offset["jobs"]) == 2 and offset["offset"] == 2

    def test_bad_filters_are_422(self, client, alice: Account):
        for query in ("status=running", "depth=-1", "limit=0", "skip=1"):
            assert_problem(client.get(f"/api/v1/jobs?{query}", headers=alice.headers), 422)

    def test_needs_the_jobs_read_scope(self, client, alice: Account):
        headers = token_with(client, alice, ["jobs:write"])
        assert_problem(client.get("/api/v1/jobs", headers=headers), 403, "insufficient_scope")


class TestGetJob:
    def test_another_users_job_is_not_found(self, client, alice: Account, bob: Account):
        job = submit(client, alice)
        assert_problem(client.get(f"/api/v1/jobs/{job['id']}", headers=bob.headers), 404)
        assert_problem(client.get("/api/v1/jobs/j_0123456789ab", headers=alice.headers), 404)

    def test_needs_the_jobs_read_scope(self, client, alice: Account):
        job = submit(client, alice)
        headers = token_with(client, alice, ["jobs:write"])
        assert_problem(client.get(f"/api/v1/jobs/{job['id']}", headers=headers), 403)


class TestCancelJob:
    def test_cascades_to_child_jobs_and_running_workers(self, client, alice: Account):
        root = submit(client, alice, worker_count=2, inputs=slow())
        child = submit(client, alice, depth=1, parent_job_id=root["id"], inputs=slow())
        grandchild = submit(client, alice, depth=2, parent_job_id=child["id"], inputs=slow())
        wait_for_job(client, alice, grandchild["id"], ("RUNNING",))
        reply = client.post(f"/api/v1/jobs/{root['id']}/cancel", headers=alice.headers)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["status"] == "CANCELED" and body["updated_at"] > root["updated_at"]
        for job in (root, child, grandchild):
            done = get_job(client, alice, job["id"])
            assert done["status"] == "CANCELED"
            assert {w["status"] for w in done["workers"]} <= {"TERMINATED"}
            for worker in done["workers"]:
                assert Execution.get_by_id(worker["execution_id"]).status == "cancelled"
        assert [usage_at(client, alice, d)["allocated"] for d in (0, 1, 2)] == [0, 0, 0]

    def test_cancelling_a_child_leaves_its_parent(self, client, alice: Account):
        root = submit(client, alice, inputs=slow())
        child = submit(client, alice, depth=1, parent_job_id=root["id"], inputs=slow())
        client.post(f"/api/v1/jobs/{child['id']}/cancel", headers=alice.headers)
        assert get_job(client, alice, root["id"])["status"] in ("PENDING", "RUNNING")
        client.post(f"/api/v1/jobs/{root['id']}/cancel", headers=alice.headers)

    def test_a_finished_job_is_409(self, client, alice: Account):
        job = submit(client, alice)
        wait_for_job(client, alice, job["id"], TERMINAL)
        reply = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)
        assert assert_problem(reply, 409, "job_finished")["details"] == {"status": "COMPLETED"}
        again = submit(client, alice, inputs=slow())
        client.post(f"/api/v1/jobs/{again['id']}/cancel", headers=alice.headers)
        reply = client.post(f"/api/v1/jobs/{again['id']}/cancel", headers=alice.headers)
        assert_problem(reply, 409, "job_finished")

    def test_another_users_job_is_not_found(self, client, alice: Account, bob: Account):
        job = submit(client, alice, inputs=slow())
        assert_problem(client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=bob.headers), 404)
        assert Job.get_by_id(job["id"]).status in ("PENDING", "RUNNING")
        client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)

    def test_needs_the_jobs_write_scope(self, client, alice: Account):
        job = submit(client, alice, inputs=slow())
        headers = token_with(client, alice, ["jobs:read"])
        assert_problem(client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=headers), 403)
        client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)


class TestSeedWorkflow:
    def test_complete_workflow_example_as_written(self, client, alice: Account):
        """Seed 002's "Complete Workflow Example", with the /api/v1 prefix and a token from
        a login with the seed's scopes; ``requests`` calls become the test client's."""
        TOKEN = token_with(client, alice, SEED_SCOPES)["Authorization"].removeprefix("Bearer ")
        API_BASE = ""
        headers = {"Authorization": f"Bearer {TOKEN}"}

        # 1. Submit a job
        response = client.post(
            f"{API_BASE}/api/v1/jobs/submit",
            headers=headers,
            json={"task_description": "Build React dashboard", "worker_count": 2, "depth": 0},
        )
        job = response.json()
        job_id = job["id"]

        # 2. Allocate resources
        response = client.post(
            f"{API_BASE}/api/v1/resources/allocate",
            headers=headers,
            json={"job_id": job_id, "depth": 0, "worker_count": 2},
        )
        allocation = response.json()
        assert allocation["granted"] in (0, 2)  # 0 only if it had already finished

        # 3. Monitor progress
        statuses = []
        deadline = time.monotonic() + 15
        while True:
            response = client.get(f"{API_BASE}/api/v1/jobs/{job_id}", headers=headers)
            job = response.json()
            status = job["status"]
            statuses.append(status)
            if status in ["COMPLETED", "FAILED", "CANCELED"]:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)  # the seed sleeps 5 s

        # 4. Release resources
        response = client.post(
            f"{API_BASE}/api/v1/resources/release",
            headers=headers,
            json={"job_id": job_id, "depth": 0},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"job_id": job_id, "depth": 0, "released": 0}
        assert status == "COMPLETED"
        assert [r["output"] for r in job["results"]] == ["Build React dashboard"] * 2
        assert usage_at(client, alice, 0) == {"depth": 0, "allocated": 0, "available": 10}
        assert Worker.select().where(Worker.job == job_id).count() == 2
