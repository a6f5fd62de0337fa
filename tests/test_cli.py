from __future__ import annotations

import pytest

from cadre.cli import main
from tests.conftest import TEST_DATABASE_URL


def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("CADRE_DATA_DIR", str(tmp_path / "cli"))
    if TEST_DATABASE_URL:
        from scripts.live_server import reset_postgres

        reset_postgres(TEST_DATABASE_URL)
        monkeypatch.setenv("CADRE_DATABASE_URL", TEST_DATABASE_URL)


def test_create_user_makes_an_admin_that_can_log_in(monkeypatch, tmp_path, capsys, make_client):
    _env(monkeypatch, tmp_path)
    code = main(
        [
            "create-user",
            "--email",
            "root@example.com",
            "--username",
            "root",
            "--password",
            "s3cret-pass",
            "--admin",
        ]
    )
    assert code == 0
    assert "created admin root" in capsys.readouterr().out
    from storage.users import User

    assert User.get(User.username == "root").role == "admin"


def test_create_user_refuses_a_weak_password(monkeypatch, tmp_path, capsys):
    _env(monkeypatch, tmp_path)
    code = main(
        ["create-user", "--email", "a@example.com", "--username", "a1", "--password", "aaaaaaaa"]
    )
    assert code == 1
    assert "too weak" in capsys.readouterr().err


def test_create_user_refuses_a_taken_username(monkeypatch, tmp_path, capsys):
    _env(monkeypatch, tmp_path)
    args = [
        "create-user",
        "--email",
        "a@example.com",
        "--username",
        "abc",
        "--password",
        "pass-word-1",
    ]
    assert main(args) == 0
    assert main([*args[:2], "b@example.com", *args[3:]]) == 1
    assert "already registered" in capsys.readouterr().err


def test_serve_trusts_forwarded_headers_only_from_the_configured_proxies(monkeypatch, tmp_path):
    import uvicorn

    _env(monkeypatch, tmp_path)
    runs: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(options))
    assert main(["serve"]) == 0
    monkeypatch.setenv("CADRE_TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16")
    assert main(["serve"]) == 0
    assert (runs[0]["proxy_headers"], runs[0]["forwarded_allow_ips"]) == (False, None)
    assert runs[1]["proxy_headers"] is True
    assert runs[1]["forwarded_allow_ips"] == ["10.0.0.1", "192.168.0.0/16"]


def test_serve_refuses_a_trusted_proxy_that_is_no_address(monkeypatch, tmp_path, capsys):
    _env(monkeypatch, tmp_path)
    monkeypatch.setenv("CADRE_TRUSTED_PROXIES", "10.0.0.1,proxy.example.com")
    assert main(["serve"]) == 2
    assert "CADRE_TRUSTED_PROXIES" in capsys.readouterr().err


def test_worker_refuses_to_start_on_sqlite(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CADRE_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("CADRE_DATABASE_URL", f"sqlite:///{tmp_path / 'cadre.db'}")
    assert main(["worker"]) == 2
    assert "cadre worker needs PostgreSQL" in capsys.readouterr().err


def test_serve_refuses_several_workers_without_postgresql_and_redis(monkeypatch, tmp_path, capsys):
    import uvicorn

    runs: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(options))
    monkeypatch.setenv("CADRE_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("CADRE_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["serve", "--workers", "2"]) == 2  # SQLite, Redis or not
    monkeypatch.setenv("CADRE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/cadre")
    monkeypatch.delenv("CADRE_REDIS_URL")
    assert main(["serve", "--workers", "2"]) == 2  # PostgreSQL without Redis
    monkeypatch.setenv("CADRE_WORKERS", "3")
    assert main(["serve"]) == 2  # the setting too
    assert "needs PostgreSQL (CADRE_DATABASE_URL" in capsys.readouterr().err
    assert runs == []


def test_serve_runs_several_workers_on_postgresql_with_redis(monkeypatch, tmp_path):
    import uvicorn

    from tests.conftest import TEST_REDIS_URL

    if not (TEST_DATABASE_URL or "").startswith("postgres") or not TEST_REDIS_URL:
        pytest.skip("needs CADRE_TEST_DATABASE_URL=postgresql://… and CADRE_TEST_REDIS_URL")
    _env(monkeypatch, tmp_path)
    monkeypatch.setenv("CADRE_REDIS_URL", TEST_REDIS_URL)
    runs: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(options))
    assert main(["serve", "--workers", "2"]) == 0
    assert runs[0]["workers"] == 2


def test_serve_no_worker_tells_every_server_process_not_to_claim_executions(monkeypatch, tmp_path):
    import uvicorn

    from cadre.settings import Settings

    _env(monkeypatch, tmp_path)
    monkeypatch.setenv("CADRE_SERVE_WORKER", "true")  # restored after the test
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    assert main(["serve"]) == 0
    assert Settings().serve_worker is True
    assert main(["serve", "--no-worker"]) == 0
    assert Settings().serve_worker is False
