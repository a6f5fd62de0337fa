"""Keep secrets that ride in query strings (``?token=…`` on WebSockets) out of the logs.

Browsers cannot set headers on a WebSocket, so its JWT may come as ``?token=``,
and uvicorn logs every request line in full. ``cadre serve`` hands uvicorn a
logging configuration whose handlers carry ``RedactSecrets``, which rewrites
``token=<value>`` (and ``access_token``, ``refresh_token``, ``password``) to
``token=[redacted]`` in every record they write.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

_SECRET_PARAM = re.compile(
    r"(?i)(?<![\w-])((?:[a-z_]*token|password|api_key)=)[^&\s\"'#]+",
)
REDACTED = r"\1[redacted]"


def redact(text: str) -> str:
    return _SECRET_PARAM.sub(REDACTED, text)


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """Redact query-string secrets from a record's message and its arguments.

    The arguments are rewritten one by one rather than merged into the message,
    since uvicorn's access formatter unpacks them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redacted(value) for key, value in record.args.items()}
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration, every handler redacting secrets.

    A configuration (not a filter added at run time) so that each worker process,
    which configures its logging anew, redacts as well.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": "cadre.log_redaction.RedactSecrets"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_secrets")
    return config
