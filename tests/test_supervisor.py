"""Seed 002's supervisor: the workers of the caller's jobs (each one execution), their
control (pause, resume, terminate) and their counts."""

from __future__ import annotations

import pytest

from cadre.engine.supervisor import Supervisor, SupervisorConfig
from storage import agents, jobs
from storage import executions as store
from storage.db import database
from storage.executions import Execution
from storage.jobs import Job
from tests.conftest import Account, assert_problem, events_of, wait_for_status
from tests.jobs_helpers import TERMINAL, get_job, slow, submit, wait_for_job, wait_until
from tests.test_jobs import token_with

STATUSES = ["IDLE", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "TERMINATED"]
WORKERS = "/api/v1/supervisor/workers"


@pytest.fixture
def client(make_client):
    return make_client(supervisor_tick_seconds=0.1)


def running_worker(client, account: Account, **body) -> tuple[dict, dict]:
    """A job with one slow worker, and that worker once it runs."""
    job = submit(client, account, inputs=slow(), **body)

    def first_running():
        workers = get_job(client, account, job["id"])["workers"]
        return workers[0] if workers and workers[0]["status"] == "RUNNING" else None

    return job, wait_until(first_running, what="running worker")


def control(client, account: Account, worker_id: str, action: str):
    return client.post(f"{WORKERS}/{worker_id}/{action}", headers=account.headers)


class TestListWorkers:
    def test_seed_shape_filters_and_pages(self, client, alice: Account, bob: Account):
        job = submit(client, alice, worker_count=3)
        wait_for_job(client, alice, job["id"], TERMINAL)
        submit(client, bob, worker_count=2)
        reply = client.get(WORKERS, headers=alice.headers)
        assert reply.status_code == 200
        body = reply.json()
        assert (body["total"], body["limit"], body["offset"], body["next"]) == (3, 50, 0, None)
        worker = body["workers"][0]
        assert set(worker) == {
            "id",
            "workspace_id",
            "job_id",
            "status",
            "execution_id",
            "attempt",
            "created_at",
            "updated_at",
        }
        assert worker["job_id"] == job["id"] and worker["workspace_id"] == alice.id
        assert worker["status"] == "COMPLETED"
        assert Execution.get_by_id(worker["execution_id"]).owner_id == alice.id
        completed = client.get(f"{WORKERS}?status=COMPLETED", headers=alice.headers).json()
        assert completed["total"] == 3
        assert client.get(f"{WORKERS}?status=RUNNING", headers=alice.headers).json()["total"] == 0
        mine = client.get(f"{WORKERS}?workspace_id={alice.id}", headers=alice.headers).json()
        assert mine["total"] == 3
        other = client.get(f"{WORKERS}?workspace_id=ws-001", headers=alice.headers).json()
        assert (other["total"], other["workers"]) == (0, [])
        first = client.get(f"{WORKERS}?limit=2&status=COMPLETED", headers=alice.headers).json()
        assert len(first["workers"]) == 2 and "status=COMPLETED" in first["next"]
        rest = client.get(first["next"], headers=alice.headers).json()
        assert len(rest["workers"]) == 1 and rest["next"] is None
        ids = {w["id"] for w in first["workers"] + rest["workers"]}
        assert ids == {w["id"] for w in get_job(client, alice, job["id"])["workers"]}
        paged = client.get(f"{WORKERS}?limit=1&offset=2", headers=alice.headers).json()
        assert len(paged["workers"]) == 1 and paged["offset"] == 2

    def test_bad_filters_are_422(self, client, alice: Account):
        for query in ("status=running", "limit=1001", "offset=-1"):
            assert_problem(client.get(f"{WORKERS}?{query}", headers=alice.headers), 422)

    def test_needs_the_supervisor_read_scope(self, client, alice: Account):
        assert_problem(client.get(WORKERS), 401)
        headers = token_with(client, alice, ["supervisor:write"])
        assert_problem(client.get(WORKERS, headers=headers), 403, "insufficient_scope")


class TestGetWorker:
    def test_follows_its_execution(self, client, alice: Account):
        job, worker = running_worker(client, alice)
        reply = client.get(f"{WORKERS}/{worker['id']}", headers=alice.headers)
        assert reply.status_code == 200 and reply.json()["status"] == "RUNNING"
        client.post(f"/api/v1/executions/{worker['execution_id']}/cancel", headers=alice.headers)
        after = client.get(f"{WORKERS}/{worker['id']}", headers=alice.headers).json()
        assert after["status"] == "TERMINATED" and after["updated_at"] > worker["updated_at"]
        client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)

    def test_unknown_or_another_users_worker_is_404(self, client, alice: Account, bob: Account):
        job = submit(client, alice)
        done = wait_for_job(client, alice, job["id"], TERMINAL)
        worker_id = done["workers"][0]["id"]
        assert_problem(client.get(f"{WORKERS}/{worker_id}", headers=bob.headers), 404)
        reply = client.get(f"{WORKERS}/worker-123", headers=alice.headers)
        assert_problem(reply, 404, "worker_not_found")

    def test_needs_the_supervisor_read_scope(self, client, alice: Account):
        headers = token_with(client, alice, ["jobs:read"])
        assert_problem(client.get(f"{WORKERS}/worker-123", headers=headers), 403)


class TestPauseAndResumeWorker:
    def test_pause_then_resume_then_it_completes(self, client, alice: Account):
        job = submit(client, alice, inputs=slow(tokens=40, delay_ms=25))
        worker = wait_until(
            lambda: next(iter(get_job(client, alice, job["id"])["workers"]), None),
            what="worker",
        )
        paused = control(client, alice, worker["id"], "pause")
        assert paused.status_code == 200, paused.text
        assert paused.json()["status"] == "PAUSED"
        assert Execution.get_by_id(worker["execution_id"]).status == "paused"
        assert_problem(control(client, alice, worker["id"], "pause"), 409, "invalid_transition")
        resumed = control(client, alice, worker["id"], "resume")
        assert resumed.status_code == 200 and resumed.json()["status"] in ("IDLE", "RUNNING")
        done = wait_for_job(client, alice, job["id"], TERMINAL)
        assert done["status"] == "COMPLETED"

    def test_resuming_a_running_worker_is_409_not_the_seeds_400(self, client, alice: Account):
        job, worker = running_worker(client, alice)
        body = assert_problem(control(client, alice, worker["id"], "resume"), 409)
        assert body["error"] == "invalid_transition"
        assert body["details"] == {"status": "RUNNING"}
        client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)

    def test_another_users_worker_is_404(self, client, alice: Account, bob: Account):
        job, worker = running_worker(client, alice)
        for action in ("pause", "resume", "terminate"):
            assert_problem(control(client, bob, worker["id"], action), 404, "worker_not_found")
        assert Execution.get_by_id(worker["execution_id"]).status == "running"
        client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)

    def test_needs_the_supervisor_write_scope(self, client, alice: Account):
        job, worker = running_worker(client, alice)
        headers = token_with(client, alice, ["supervisor:read"])
        for action in ("pause", "resume", "terminate"):
            reply = client.post(f"{WORKERS}/{worker['id']}/{action}", headers=headers)
            assert_problem(reply, 403, "insufficient_scope")
        client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)


class TestTerminateWorker:
    def test_cancels_its_execution_and_the_job_completes_without_it(self, client, alice: Account):
        job = submit(client, alice, worker_count=2, inputs=slow(tokens=60, delay_ms=25))
        workers = wait_until(
            lambda: [
                w for w in get_job(client, alice, job["id"])["workers"] if w["status"] == "RUNNING"
            ],
            what="running workers",
        )
        reply = control(client, alice, workers[0]["id"], "terminate")
        assert reply.status_code == 200, reply.text
        assert reply.json()["status"] == "TERMINATED"
        wait_for_status(client, alice, workers[0]["execution_id"], ("cancelled",))
        done = wait_for_job(client, alice, job["id"], TERMINAL)
        assert done["status"] == "COMPLETED"
        statuses = sorted(w["status"] for w in done["workers"])
        assert statuses == ["COMPLETED", "TERMINATED"]  # not restarted
        again = control(client, alice, workers[0]["id"], "terminate")
        assert assert_problem(again, 409, "invalid_transition")["details"] == {
            "status": "TERMINATED"
        }

    def test_a_job_whose_every_worker_was_terminated_is_canceled(self, client, alice: Account):
        job, worker = running_worker(client, alice)
        wait_until(
            lambda: any(
                e["type"] == "token" for e in events_of(client, alice, worker["execution_id"])
            ),
            what="a token",
        )
        assert control(client, alice, worker["id"], "terminate").status_code == 200
        done = wait_for_job(client, alice, job["id"], TERMINAL)
        assert done["status"] == "CANCELED" and done["granted"] == 0
        partial = done["results"][0]["output"]  # what it said before it was stopped
        assert partial and "hello there world".startswith(partial.split()[0])

    def test_a_completed_worker_is_409(self, client, alice: Account):
        job = submit(client, alice)
        done = wait_for_job(client, alice, job["id"], TERMINAL)
        for action in ("terminate", "pause", "resume"):
            reply = control(client, alice, done["workers"][0]["id"], action)
            assert_problem(reply, 409, "invalid_transition")


class TestGetSupervisorMetrics:
    def test_counts_the_callers_workers_with_every_status(
        self, client, alice: Account, bob: Account
    ):
        empty = client.get("/api/v1/supervisor/metrics", headers=alice.headers)
        assert empty.status_code == 200
        assert empty.json() == {"total_workers": 0, "by_status": dict.fromkeys(STATUSES, 0)}
        done = submit(client, alice, worker_count=2)
        wait_for_job(client, alice, done["id"], TERMINAL)
        failed = submit(client, alice, inputs={"echo": {"fail": "x"}})
        wait_for_job(client, alice, failed["id"], TERMINAL)
        submit(client, bob, worker_count=3)
        body = client.get("/api/v1/supervisor/metrics", headers=alice.headers).json()
        assert body == {
            "total_workers": 3,
            "by_status": {**dict.fromkeys(STATUSES, 0), "COMPLETED": 2, "FAILED": 1},
        }

    def test_needs_the_supervisor_read_scope(self, client, alice: Account):
        headers = token_with(client, alice, ["supervisor:write"])
        assert_problem(client.get("/api/v1/supervisor/metrics", headers=headers), 403)


class TestSupervisorLoop:
    """The loop reads jobs from the database alone, so a job survives a restart."""

    def test_a_job_only_in_the_database_is_run(self, client, alice: Account):
        # as a job left by a server that stopped before starting its workers: nothing pokes
        # this supervisor, its next tick finds the job
        stored = jobs.create_job(
            owner=alice.id,
            task_description="left behind",
            worker_count=2,
            depth=0,
            agent_name="echo",
            config=dict(agents.DEFAULTS),
            inputs={},
            workspace_id=alice.id,
        )
        done = wait_for_job(client, alice, stored.id, TERMINAL)
        assert done["status"] == "COMPLETED"
        assert [r["output"] for r in done["results"]] == ["left behind"] * 2

    def test_a_worker_a_server_stop_cut_short_is_started_again(self, client, alice: Account):
        # as left by a server stopped mid-run (its executor ends runs failed/interrupted);
        # with CADRE_JOB_WORKER_RETRIES=0 a real failure would fail the job. Stored in one
        # transaction: the running supervisor never sees the job without its worker (it
        # would start slot 0 itself, and this insert would then collide with it).
        with database.atomic():
            stored = jobs.create_job(
                owner=alice.id,
                task_description="carry on",
                worker_count=1,
                depth=0,
                agent_name="echo",
                config=dict(agents.DEFAULTS),
                inputs={},
                workspace_id=alice.id,
                status="RUNNING",
            )
            cut_short = store.create_execution(
                owner=alice.id,
                agent_id="echo",
                agent_name="echo",
                task="carry on",
                mode="safe",
                inputs={},
                config=dict(agents.DEFAULTS),
                provider="echo",
                model="echo",
                status="failed",
                stop_reason="interrupted",
            )
            jobs.create_worker(
                owner=alice.id,
                job=stored.id,
                slot=0,
                workspace_id=alice.id,
                execution_id=cut_short.id,
                status="FAILED",
            )
        done = wait_for_job(client, alice, stored.id, TERMINAL)
        assert done["status"] == "COMPLETED"
        assert [(w["attempt"], w["status"]) for w in done["workers"]] == [
            (0, "FAILED"),
            (1, "COMPLETED"),
        ]
        assert done["results"][1]["output"] == "carry on"

    @pytest.mark.inprocess
    def test_a_worker_is_started_once_whoever_tries(self, client, alice: Account):
        app_supervisor: Supervisor = client.app.state.services.supervisor
        other = Supervisor(SupervisorConfig(), app_supervisor.executor)
        job = submit(client, alice, inputs=slow())
        wait_until(lambda: jobs.workers_of(job["id"]), what="worker")
        executions = Execution.select().count()
        # the same slot and attempt: nothing to submit
        assert other._create_worker(Job.get_by_id(job["id"]), 0, 0) is None
        assert len(jobs.workers_of(job["id"])) == 1
        assert Execution.select().count() == executions  # rolled back with the worker
        client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)
