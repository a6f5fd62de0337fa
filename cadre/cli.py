"""The ``cadre`` command: serve, migrate, create-user."""

from __future__ import annotations

import argparse
import getpass
import sys

from pydantic import ValidationError

from cadre.errors import CadreError
from cadre.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from cadre import server
    from cadre.log_redaction import uvicorn_log_config
    from storage import db

    db.migrate(db.open_database(settings.effective_database_url))
    settings.signing_key()  # refuse a short key file now, not in every worker
    uvicorn.run(
        "cadre.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=None if args.reload else (args.workers or settings.workers),
        reload=args.reload,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(),  # ?token= values redacted from every line
        ws_max_size=settings.max_body_bytes,  # WebSocket messages: the same limit as bodies
        # X-Forwarded-For/-Proto only from CADRE_TRUSTED_PROXIES: the client address
        # (rate limits, logs) is the forwarded one for those peers, the peer's own otherwise.
        proxy_headers=bool(settings.trusted_proxy_list),
        forwarded_allow_ips=settings.trusted_proxy_list or None,
        http=server.PROTOCOL,  # httptools with a bounded, timed request head (cadre/server.py)
        limit_concurrency=settings.max_connections,  # beyond it: 503
    )
    return 0


def _migrate(_args: argparse.Namespace, settings: Settings) -> int:
    from storage import db

    applied = db.migrate(db.open_database(settings.effective_database_url))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cadre", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--reload", action="store_true")
    serve.set_defaults(run=_serve)

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
