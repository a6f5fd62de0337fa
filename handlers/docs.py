"""The API description as written, and the ReDoc page, with its script served locally (no CDN)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.responses import Response

from cadre.spec_docs import authored_json

REDOC_DIR = Path(__file__).resolve().parent.parent / "cadre" / "static" / "redoc"

REDOC_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Cadre API reference</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="/redoc/redoc.standalone.js"></script>
  </body>
</html>
"""


@cache
def _script() -> bytes:
    return (REDOC_DIR / "redoc.standalone.js").read_bytes()


async def get_redoc() -> tuple[str, int, dict[str, str]]:
    return REDOC_PAGE, 200, {"Content-Type": "text/html"}


async def get_redoc_script() -> tuple[bytes, int, dict[str, str]]:
    return (
        _script(),
        200,
        {
            "Content-Type": "application/javascript",
            "Cache-Control": "public, max-age=86400",
        },
    )


async def get_openapi() -> Response:
    # a ready response: Connexion would JSON-encode bytes declared as application/json
    return Response(authored_json(), media_type="application/json")


get_api_openapi = get_openapi  # /api/v1/openapi.json: the same document
