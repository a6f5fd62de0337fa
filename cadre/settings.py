"""Settings, read once from ``CADRE_*`` environment variables (and an optional ``.env``).

Nothing else in Cadre reads ``os.environ``: the app factory takes a ``Settings``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cadre.engine.tools.base import AstLimits, PathLimits, ShellLimits

SECRET_KEY_FILE = "secret_key"
MIN_SECRET_KEY_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash


class Settings(BaseSettings):
    """Every knob Cadre has; the README's configuration table lists each one."""

    model_config = SettingsConfigDict(
        env_prefix="CADRE_", env_file=".env", extra="ignore", frozen=True
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    data_dir: Path = Path("data")
    database_url: str | None = None
    redis_url: str | None = None
    redis_stream_maxlen: int = Field(10_000, ge=100, le=10_000_000)
    redis_stream_ttl_seconds: int = Field(3600, ge=60, le=30 * 86_400)
    secret_key: str | None = None
    jwt_algorithm: str = "HS256"
    jwt_expire_minutes: int = Field(60, ge=1)
    jwt_issuer: str = "cadre"
    jwt_audience: str = "cadre-api"
    refresh_expire_days: int = Field(30, ge=1)
    rate_limit_anonymous: str = "100/hour"
    rate_limit_authenticated: str = "1000/hour"
    rate_limit_premium: str = "10000/hour"
    rate_limit_enabled: bool = True
    cors_origins: str = ""
    log_level: str = "INFO"
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    request_header_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    websocket_auth_timeout_seconds: float = Field(5.0, gt=0, le=3600)
    max_connections: int = Field(1000, ge=1, le=1_000_000)
    validate_responses: bool = False
    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_api_key: str | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    provider_timeout: float = Field(120.0, gt=0)
    prices_file: Path | None = None
    max_concurrent_executions: int = Field(16, ge=1, le=10_000)
    max_concurrent_executions_per_user: int = Field(4, ge=1, le=10_000)
    max_execution_seconds: int = Field(3600, ge=1)
    max_execution_steps: int = Field(32, ge=1, le=1000)
    max_output_tokens: int = Field(4096, ge=1)
    stream_keepalive_seconds: float = Field(15.0, gt=0)
    stream_history_events: int = Field(32, ge=1, le=100_000)
    inline_db_ms_per_turn: float = Field(5.0, ge=0, le=1000)
    # orjson, which serialises replies, stops at 255 levels: stay well below it.
    max_json_depth: int = Field(32, ge=1, le=128)
    max_inputs_bytes: int = Field(64 * 1024, ge=1024)
    max_path_depth: int = Field(32, ge=1, le=256)
    max_path_length: int = Field(1024, ge=16, le=4096)
    max_ast_source_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_ast_workers: int = Field(2, ge=1, le=64)
    workspace_quota_mb: int = Field(100, ge=0, le=1024 * 1024)
    max_sessions_per_user: int = Field(1000, ge=1, le=1_000_000)
    login_max_failures: int = Field(5, ge=0, le=1000)
    login_lockout_seconds: int = Field(300, ge=1, le=86_400)
    trusted_proxies: str = ""
    max_concurrent_password_hashes: int = Field(2, ge=1, le=64)
    # argon2id cost, OWASP's recommended minimum by default; raise it as hardware allows.
    argon2_memory_kib: int = Field(19 * 1024, ge=8 * 1024, le=1024 * 1024)
    argon2_time_cost: int = Field(2, ge=1, le=20)
    argon2_parallelism: int = Field(1, ge=1, le=16)
    shell_enabled: bool = False
    shell_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    shell_max_timeout_seconds: float = Field(120.0, gt=0, le=3600)
    shell_output_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    shell_memory_mb: int = Field(1024, ge=64, le=1024 * 1024)
    shell_cpu_seconds: int = Field(60, ge=1, le=86_400)
    shell_file_size_mb: int = Field(64, ge=1, le=1024 * 1024)
    shell_max_processes: int = Field(64, ge=1, le=10_000)
    shell_max_concurrent: int = Field(4, ge=1, le=256)
    # Seed 002: concurrent workers per user at job depth 0, 1, 2, ...
    depth_quotas: str = "10,8,5,3,2,1"
    max_job_workers: int = Field(10, ge=1, le=1000)
    job_worker_retries: int = Field(0, ge=0, le=10)
    supervisor_tick_seconds: float = Field(0.5, gt=0, le=60)
    # PostgreSQL: whether ``cadre serve`` also claims queued executions (``--no-worker``).
    serve_worker: bool = True
    shutdown_grace_seconds: float = Field(30.0, gt=0, le=3600)

    @property
    def path_limits(self) -> PathLimits:
        return PathLimits(max_depth=self.max_path_depth, max_length=self.max_path_length)

    @property
    def ast_limits(self) -> AstLimits:
        return AstLimits(self.max_ast_source_bytes, self.max_ast_workers)

    @property
    def shell_limits(self) -> ShellLimits:
        return ShellLimits(
            enabled=self.shell_enabled,
            timeout_seconds=min(self.shell_timeout_seconds, self.shell_max_timeout_seconds),
            max_timeout_seconds=self.shell_max_timeout_seconds,
            output_bytes=self.shell_output_bytes,
            memory_mb=self.shell_memory_mb,
            cpu_seconds=self.shell_cpu_seconds,
            file_size_mb=self.shell_file_size_mb,
            max_processes=self.shell_max_processes,
            max_concurrent=self.shell_max_concurrent,
        )

    @property
    def workspace_quota_bytes(self) -> int | None:
        """``CADRE_WORKSPACE_QUOTA_MB`` in bytes; 0 means no quota."""
        return self.workspace_quota_mb * 1024 * 1024 or None

    @field_validator("secret_key")
    @classmethod
    def _long_enough_key(cls, value: str | None) -> str | None:
        if value and len(value.encode()) < MIN_SECRET_KEY_BYTES:
            raise ValueError(
                f"CADRE_SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes long "
                f"(it has {len(value.encode())}); generate one with: "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return value

    @field_validator("jwt_algorithm")
    @classmethod
    def _symmetric_algorithm(cls, value: str) -> str:
        if value not in {"HS256", "HS384", "HS512"}:
            raise ValueError("CADRE_JWT_ALGORITHM must be one of HS256, HS384, HS512")
        return value

    @field_validator(
        "rate_limit_anonymous", "rate_limit_authenticated", "rate_limit_premium", mode="before"
    )
    @classmethod
    def _bare_number_means_per_hour(cls, value: object) -> object:
        """The seed documents bare numbers (``100``): read them as requests per hour."""
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            return f"{int(value)}/hour"
        return value

    @field_validator("depth_quotas")
    @classmethod
    def _quota_list(cls, value: str) -> str:
        parts = [part.strip() for part in value.split(",")]
        if not 1 <= len(parts) <= 100 or not all(p.isdigit() and int(p) <= 10_000 for p in parts):
            raise ValueError(
                "CADRE_DEPTH_QUOTAS must be 1 to 100 comma-separated whole numbers up to "
                "10000 (workers per user at depth 0, 1, ...), e.g. 10,8,5,3,2,1"
            )
        return value

    @property
    def quotas(self) -> tuple[int, ...]:
        """``CADRE_DEPTH_QUOTAS``: the most workers one user's jobs run at once, per depth."""
        return tuple(int(part) for part in self.depth_quotas.split(","))

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"CADRE_TRUSTED_PROXIES: {item!r} is not an IP address or network (CIDR)"
                ) from None
        return value

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [item.strip() for item in self.trusted_proxies.split(",") if item.strip()]

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'cadre.db'}"

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    def signing_key(self) -> str:
        """The JWT key: the configured one, else one generated once and kept in the data dir."""
        if self.secret_key:
            return self.secret_key
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.data_dir / SECRET_KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_text().strip()
            if len(key.encode()) < MIN_SECRET_KEY_BYTES:
                raise ValueError(
                    f"The key in {path} is shorter than {MIN_SECRET_KEY_BYTES} bytes: "
                    "delete the file to have a new one generated, or set CADRE_SECRET_KEY."
                ) from None
            return key
        key = secrets.token_urlsafe(48)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key
