"""Seed 002's resources: per-user quotas of concurrent workers per depth, and grants."""

from __future__ import annotations

from cadre.connexion.binding import Reply
from cadre.engine.supervisor import Supervisor
from models_gen.api import Allocation, QuotaList, Release, UsageList
from storage import jobs


def get_resource_quotas(supervisor: Supervisor) -> Reply:
    quotas = supervisor.config.quotas
    return QuotaList.model_validate(
        {"quotas": [{"depth": d, "max_workers": n} for d, n in enumerate(quotas)]}
    ), 200


def get_resource_usage(user: str, supervisor: Supervisor) -> Reply:
    allocated = jobs.usage(user)
    usage = [
        {"depth": d, "allocated": allocated.get(d, 0), "available": max(0, n - allocated.get(d, 0))}
        for d, n in enumerate(supervisor.config.quotas)
    ]
    return UsageList.model_validate({"usage": usage}), 200


def allocate_resources(user: str, body: dict, supervisor: Supervisor) -> Reply:
    job_id, depth, requested = body["job_id"], body["depth"], body["worker_count"]
    granted = supervisor.allocate(user, job_id, depth, requested)
    reply = Allocation(job_id=job_id, depth=depth, requested=requested, granted=granted)
    return reply, 200


def release_resources(user: str, body: dict, supervisor: Supervisor) -> Reply:
    job_id, depth = body["job_id"], body["depth"]
    released = supervisor.release(user, job_id, depth)
    return Release(job_id=job_id, depth=depth, released=released), 200
