"""The ``cadre`` command: serve, worker, migrate, create-user."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from pydantic import ValidationError

from cadre.errors import CadreError
from cadre.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from cadre import server
    from cadre.log_redaction import uvicorn_log_config
    from storage import db

    workers = args.workers or settings.workers
    url = settings.effective_database_url
    if workers > 1 and not args.reload and (db.is_embedded(url) or not settings.redis_url):
        print(
            "error: cadre serve --workers N (N > 1) needs PostgreSQL (CADRE_DATABASE_URL="
            "postgresql://…) and Redis (CADRE_REDIS_URL=redis://…): each process runs its "
            "own engine and rate limiter, which only share state there.",
            file=sys.stderr,
        )
        return 2
    _migrate_all(settings)
    settings.signing_key()  # refuse a short key file now, not in every worker
    if args.no_worker:  # read by create_app in every uvicorn process
        os.environ["CADRE_SERVE_WORKER"] = "false"
    uvicorn.run(
        "cadre.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=None if args.reload else workers,
        reload=args.reload,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(),  # ?token= values redacted from every line
        ws_max_size=settings.max_body_bytes,  # WebSocket messages: the same limit as bodies
        # X-Forwarded-For/-Proto only from CADRE_TRUSTED_PROXIES: the client address
        # (rate limits, logs) is the forwarded one for those peers, the peer's own otherwise.
        proxy_headers=bool(settings.trusted_proxy_list),
        forwarded_allow_ips=settings.trusted_proxy_list or None,
        http=server.PROTOCOL,  # httptools with a bounded, timed request head (cadre/server.py)
        ws=server.WS_PROTOCOL,  # per-message deflate in small windows (cadre/server.py)
        limit_concurrency=settings.max_connections,  # beyond it: 503
    )
    return 0


def _migrate_all(settings: Settings) -> list[str]:
    """Cadre's migrations, and on PostgreSQL the queue's tables (once)."""
    from storage import db

    database = db.open_database(settings.effective_database_url)
    applied = db.migrate(database)
    if not db.is_embedded(settings.effective_database_url):
        from cadre.engine.queue import install_schema  # Procrastinate: PostgreSQL only

        if install_schema(database):
            applied.append("procrastinate schema")
    db.close_all(database)
    return applied


def _migrate(_args: argparse.Namespace, settings: Settings) -> int:
    applied = _migrate_all(settings)
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from cadre import worker
    from storage import db

    if db.is_embedded(settings.effective_database_url):
        print(
            "error: cadre worker needs PostgreSQL (CADRE_DATABASE_URL=postgresql://…); "
            "on SQLite, cadre serve runs every execution itself.",
            file=sys.stderr,
        )
        return 2
    _migrate_all(settings)
    asyncio.run(worker.run(settings, args.concurrency))
    return 0


def _create_user(args: argparse.Namespace, settings: Settings) -> int:
    from cadre import auth
    from storage import db, users

    db.migrate(db.open_database(settings.effective_database_url))
    password = args.password or getpass.getpass("Password: ")
    auth.check_password_strength(password, username=args.username, email=args.email)
    role = "admin" if args.admin else "premium" if args.premium else "user"
    user = users.create_user(
        email=args.email,
        username=args.username,
        full_name=args.full_name,
        password_hash=auth.hash_password(password, auth.password_hasher(settings)),
        role=role,
    )
    print(f"created {role} {user.username} ({user.id})")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be 1 to 10000, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cadre", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--reload", action="store_true")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="PostgreSQL: only serve the API; `cadre worker` processes run the executions",
    )
    serve.set_defaults(run=_serve)

    work = commands.add_parser("worker", help="run queued executions (PostgreSQL)")
    work.add_argument(
        "--concurrency",
        type=_positive,
        metavar="N",
        help="executions run at once (default: CADRE_MAX_CONCURRENT_EXECUTIONS)",
    )
    work.set_defaults(run=_worker)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(run=_migrate)

    create = commands.add_parser("create-user", help="create an account")
    create.add_argument("--email", required=True)
    create.add_argument("--username", required=True)
    create.add_argument("--password", help="prompted for when left out")
    create.add_argument("--full-name")
    role = create.add_mutually_exclusive_group()
    role.add_argument("--admin", action="store_true")
    role.add_argument("--premium", action="store_true")
    create.set_defaults(run=_create_user)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "CADRE_" + "_".join(map(str, error["loc"])).upper()
            print(f"error: {name}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    try:
        return args.run(args, settings)
    except CadreError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a setting that only shows its fault in use (the key file)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
