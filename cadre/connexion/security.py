"""The OAuth2 bearer check, with the app's own ``TokenService``.

Connexion resolves ``x-tokenInfoFunc`` to a module-level function by name and
inspects its signature on every request. Cadre's handler is built with the
token service of the app it serves, so the check needs no global; the spec's
security scheme only declares the scopes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from connexion.exceptions import OAuthResponseProblem
from connexion.security import NO_VALUE, OAuthSecurityHandler

from cadre.auth import TokenService


class OAuth2Handler(OAuthSecurityHandler):
    """Bearer tokens decoded by ``tokens``; their claims, with ``scope``, are the token info."""

    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens

    def get_tokeninfo_func(
        self, security_definition: dict
    ) -> Callable[[str], Awaitable[dict[str, Any]]]:
        return self.token_info

    async def token_info(self, token: str) -> dict[str, Any]:
        claims = await self.tokens.authenticate(token)  # 401 for a bad token, before scopes
        return {**claims, "scope": claims["scopes"]}

    def _generic_check(self, func: Callable[..., Any], exception_msg: str) -> Any:
        """Connexion's check without its per-request ``inspect.signature`` calls."""

        async def wrapper(request: Any, *args: Any, required_scopes: Any = None) -> Any:
            token_info = await func(*args)
            if token_info is NO_VALUE:
                return NO_VALUE
            if token_info is None:
                raise OAuthResponseProblem(detail=exception_msg)
            return token_info

        return wrapper


def security_map(tokens: TokenService) -> dict[str, Callable[[], OAuth2Handler]]:
    """Connexion's ``security_map``: it calls each entry without arguments per scheme."""
    return {"oauth2": lambda: OAuth2Handler(tokens)}
