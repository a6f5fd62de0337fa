"""Cadre's adapter to Connexion 3.3: the only code that touches Connexion's internals.

Connexion routes, secures and validates every request from ``openapi.yaml``;
this package replaces the parts of its stack that redo per request what only
depends on the operation (``app.py`` says which, and why). That means relying
on names Connexion and Starlette do not promise to keep, so the package
refuses to import on any Connexion but 3.3.x (``SUPPORTED``), Starlette has an
upper bound in ``pyproject.toml``, and ``tests/test_connexion_adapter.py``
fails if any fast path is no longer installed on a built app, rather than
letting an upgrade fall back to the slow path with every other test passing.

Internal names relied on (module: name: what for):

* ``connexion.apps.asynchronous``: ``AsyncApi``, ``AsyncASGIApp``, ``AsyncOperation``
  (``from_operation``, ``make_operation``, ``api_cls``): operations called through the
  ``Binder``; ``AsyncApp._middleware_app`` and ``AsyncApp.middleware.app``: swapped for
  Cadre's ASGI app (``app.py``).
* ``connexion.middleware.routing``: ``RoutingMiddleware`` (``router``, ``add_api``) and
  ``RoutingOperation.operation_id``; ``connexion.middleware.abstract.ROUTING_CONTEXT``:
  the static route table (``routing.py``).
* ``connexion.middleware.swagger_ui.SwaggerUIMiddleware``: skipped outside its prefixes.
* ``connexion.security``: ``OAuthSecurityHandler`` (``get_tokeninfo_func``,
  ``_generic_check``), ``NO_VALUE``; ``connexion.exceptions.OAuthResponseProblem``:
  the bearer check on the app's ``TokenService`` (``security.py``).
* ``connexion.middleware.request_validation``: ``RequestValidationMiddleware``,
  ``RequestValidationAPI``, ``RequestValidationOperation`` (``_operation``,
  ``_validator_map``, ``extract_content_type``, ``next_app``, ``strict_validation``,
  ``security_query_params``): validators built once per operation (``validation.py``).
* ``connexion.validators``: ``VALIDATOR_MAP``, ``JSONRequestBodyValidator`` (``_schema``,
  ``_required``, ``_nullable``, ``_encoding``, ``_insert_messages``), ``ParameterValidator``
  (``parameters``, ``uri_parser``, ``strict_validation``, ``security_query_params``),
  ``FormDataValidator`` (``_schema``, ``_strict_validation``, ``_validator``);
  ``connexion.datastructures.MediaTypeDict``; ``connexion.json_schema.Draft4RequestValidator``
  (OpenAPI's ``nullable`` for Python jsonschema; ``cadre.streams`` gets it, extended, as
  ``validation.RequestValidator``).
* ``connexion.operations.AbstractOperation`` (``parameters``, ``request_body``,
  ``body_name``, ``body_schema``, ``body_definition``, ``uri_parser_class``, ``consumes``,
  ``function``): what the ``Binder`` and the validators read once per operation.
* ``connexion.decorators.parameter``: ``pythonic``, ``sanitized`` (Connexion's argument
  names, kept so handler names stay Connexion's); ``connexion.decorators.response``:
  ``AsyncResponseDecorator.build_framework_response``; ``connexion.frameworks.starlette``:
  ``Starlette.connexion_to_framework_response``; ``connexion.lifecycle``:
  ``ConnexionRequest`` (typed form bodies), ``ConnexionResponse`` (``binding.py``).
* ``connexion.spec``: ``OpenAPISpecification._validate_spec``: each distinct document
  validated once per process, not once per app (``spec.py``).
* ``connexion.jsonifier.Jsonifier``: given orjson as its ``json`` module (``jsonifier.py``).
* ``connexion.resolver``: ``Resolver.resolve_function_from_operation_id``, ``Resolution``,
  and the operation's raw ``_operation`` dict (for its ``tags``): camelCase operationIds
  to ``handlers.<tag>.<snake_case>`` (``resolver.py``).
* ``connexion.json_schema``: ``Draft4ResponseValidator``, ``allow_nullable``;
  ``connexion.validators.json.JSONResponseBodyValidator`` (``_schema``): ``nullable``
  beside ``allOf`` in replies (``response_validation.py``).
* Starlette: ``starlette.routing.Match``/``Mount`` and ``Route.matches`` (public, but
  walked by hand in ``routing.py``).

Everything else it once borrowed (``starlette._utils.get_route_path``, Connexion's
``_get_query_defaults``, ``_get_val_from_param``, ``_get_body_argument_form``,
``utils.is_null``/``is_nullable``/``inspect_function_arguments``/content-type parsing,
``unwrap_decorators``) is a few lines of Cadre's own.
"""

from __future__ import annotations

from importlib.metadata import version

SUPPORTED = (3, 3)  # Connexion major.minor this adapter is written against


def check_connexion_version(installed: str) -> None:
    """Refuse any Connexion but 3.3.x, naming the supported range and what to do."""
    parts = installed.split(".")
    try:
        major_minor = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        major_minor = None
    if major_minor != SUPPORTED:
        raise ImportError(
            f"Cadre's Connexion adapter (cadre.connexion) supports connexion>=3.3,<3.4, "
            f"but connexion {installed} is installed. Install the supported range "
            "(pip install 'connexion[swagger-ui,uvicorn]>=3.3,<3.4'), or port cadre/connexion/ "
            "to the new version: its docstring lists every Connexion internal it relies on."
        )


check_connexion_version(version("connexion"))

from cadre.connexion.app import CadreConnexionApp, middleware_stack  # noqa: E402
from cadre.connexion.jsonifier import jsonifier  # noqa: E402
from cadre.connexion.resolver import TagResolver  # noqa: E402
from cadre.connexion.response_validation import RESPONSE_VALIDATORS  # noqa: E402
from cadre.connexion.spec import install as _validate_documents_once  # noqa: E402
from cadre.connexion.validation import validator_map  # noqa: E402

_validate_documents_once()

__all__ = [
    "RESPONSE_VALIDATORS",
    "SUPPORTED",
    "CadreConnexionApp",
    "TagResolver",
    "check_connexion_version",
    "jsonifier",
    "middleware_stack",
    "validator_map",
]
