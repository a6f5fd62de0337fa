"""Request validators plugged into Connexion.

Connexion's own validators rebuild a JSON Schema validator on every request and
stop at the first error. These compile each schema once and report every
failing field, as ``ValidationFailed`` (422) with ``details`` keyed by where the
field lives (``body.name``, ``query.limit``).
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import parse_qsl

import jsonschema_rs
import orjson
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import UnsupportedMediaTypeProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.middleware.request_validation import (
    RequestValidationAPI,
    RequestValidationMiddleware,
    RequestValidationOperation,
)
from connexion.validators import VALIDATOR_MAP as CONNEXION_VALIDATORS
from connexion.validators import FormDataValidator, JSONRequestBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from jsonschema.validators import extend
from starlette.datastructures import Headers

from cadre.errors import BadRequest, ValidationFailed, excerpt
from cadre.json_limits import DEFAULT_MAX_JSON_DEPTH, check_depth

_FORMAT_CHECKER = Draft4Validator.FORMAT_CHECKER


@functools.lru_cache(maxsize=256)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` as ECMA-262 reads a final ``$``: the end of the string, nothing else.

    Python's ``$`` also matches before a trailing newline, so ``"coder\\n"`` passed
    ``^[a-zA-Z0-9_.-]+$``; OpenAPI patterns are ECMA-262, as jsonschema-rs reads them.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# Connexion's request validator (OpenAPI's ``nullable``) with ECMA-262 patterns.
RequestValidator = extend(Draft4RequestValidator, {"pattern": _ecma_pattern})
PARSED_BODY = "cadre.parsed_body"
PARSED_PARAMS = "cadre.parsed_params"  # (query, path), as the uri parser typed them
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def content_type_of(scope: Any) -> tuple[str | None, str | None]:
    """The request's media type (lower case) and charset, each None when not given."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-type":
            mime, _, parameters = value.decode("latin-1").partition(";")
            encoding = None
            for parameter in parameters.split(";"):
                if parameter.strip().startswith("charset="):
                    encoding = parameter.strip()[len("charset=") :]
            return (mime.strip().lower() or None), encoding
    return None, None


def is_nullable(definition: dict[str, Any]) -> bool:
    """Whether a parameter or body definition allows ``null`` (OpenAPI 3.0 ``nullable``)."""
    schema = definition.get("schema", definition)
    return bool(schema.get("nullable", False) or definition.get("x-nullable", False))


def is_null(value: Any) -> bool:
    """``None``, or the text ``null``/``None`` a query string or header spells it with."""
    return value is None or (isinstance(value, str) and value.strip() in ("null", "None"))


def _plain_json_schema(schema: Any) -> Any:
    """``schema`` with OpenAPI 3.0's ``nullable`` spelled as JSON Schema: ``null`` allowed.

    Mirrors Connexion's request validator, which lets ``null`` through the ``type``
    and ``enum`` checks of a schema marked ``nullable`` (or ``x-nullable: true``).
    """
    if isinstance(schema, list):
        return [_plain_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    plain = {key: _plain_json_schema(value) for key, value in schema.items()}
    if schema.get("x-nullable") is True or schema.get("nullable"):
        if "type" in plain:
            types = plain["type"] if isinstance(plain["type"], list) else [plain["type"]]
            plain["type"] = [*types, "null"] if "null" not in types else types
        if "enum" in plain and None not in plain["enum"]:
            plain["enum"] = [*plain["enum"], None]
    return plain


class CompiledSchema:
    """One body schema, compiled twice: a fast verdict, and the detailed errors.

    jsonschema-rs (compiled Rust) decides in about a microsecond whether a body is
    valid, which nearly every body is. Only a body it refuses goes through Python
    jsonschema, whose errors name each field; Python jsonschema stays the judge,
    so the Rust check may be stricter than it but must never be laxer (tested).
    """

    def __init__(self, schema: dict) -> None:
        self.detailed = RequestValidator(schema, format_checker=_FORMAT_CHECKER)
        self.fast = jsonschema_rs.Draft4Validator(_plain_json_schema(schema), validate_formats=True)

    def errors(self, instance: Any) -> list[ValidationError]:
        try:
            if self.fast.is_valid(instance):
                return []
        except Exception:  # a value Rust cannot take (an integer over 64 bits): Python judges
            pass
        return list(self.detailed.iter_errors(instance))


def _where(prefix: str, error: ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [n for n in error.validator_value if n not in error.instance]
        if missing:
            path = f"{path}.{missing[0]}" if path else missing[0]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = [n for n in error.instance if n not in allowed]
        if extra:
            path = f"{path}.{extra[0]}" if path else extra[0]
    return f"{prefix}.{path}" if path else prefix


def _details(prefix: str, errors: list[ValidationError]) -> dict[str, str]:
    details: dict[str, str] = {}
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        details.setdefault(_where(prefix, error), excerpt(error.message))
    return details


def _raise_invalid(details: dict[str, str]) -> None:
    fields = ", ".join(details)
    raise ValidationFailed(f"Invalid request: check {fields}.", details=details)


class BodyValidator(JSONRequestBodyValidator):
    """JSON bodies: 400 for what is not JSON, 422 naming every field that breaks the schema.

    Built once per operation and media type (``ValidationOperation`` keeps it), so the schema
    is compiled once too.
    """

    def __init__(self, *, max_json_depth: int = DEFAULT_MAX_JSON_DEPTH, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._compiled = CompiledSchema(self._schema)
        self._max_json_depth = max_json_depth

    async def wrap_receive(self, receive, *, scope):  # type: ignore[no-untyped-def]
        """Read the whole body (sized or chunked), validate it, and replay it downstream.

        An absent optional body passes untouched; an absent required one is a 400.
        """
        length, chunked = None, False
        for name, value in scope["headers"]:
            if name == b"content-length" and length is None:
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length == b"0" or (length is None and not chunked):
            if self._required:
                raise BadRequest("This operation needs a request body.", error="missing_body")
            return receive, scope
        messages = []
        more_body = True
        while more_body:
            message = await receive()
            messages.append(message)
            more_body = message.get("more_body", False)
        body = self._parse_bytes(b"".join([message.get("body", b"") for message in messages]))
        if body is None and self._required:
            raise BadRequest("This operation needs a request body.", error="missing_body")
        if body is not None or not self._nullable:
            self._validate(body)
        scope[PARSED_BODY] = body  # the handler gets this instead of a second parse
        return self._insert_messages(receive, messages=messages), scope

    def _parse_bytes(self, raw: bytes) -> Any:
        if not raw:
            return None
        try:
            text = raw.decode(self._encoding)
        except UnicodeDecodeError as exc:
            raise BadRequest(
                f"The request body is not valid {self._encoding}.", error="invalid_encoding"
            ) from exc
        try:
            # orjson refuses NaN, Infinity and numbers that overflow to infinity
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(
                f"The request body is not valid JSON: {exc}", error="invalid_json"
            ) from exc

    def _validate(self, body: Any) -> None:
        if body is None and not self._nullable:
            raise BadRequest("The request body must not be null.", error="invalid_body")
        check_depth(body, self._max_json_depth)  # before anything walks it
        errors = self._compiled.errors(body)
        if errors:
            _raise_invalid(_details("body", errors))


class ParamsValidator(ParameterValidator):
    """Path, query and header parameters, with unknown query parameters refused.

    The typed values are left in the scope for the handler's arguments, so the
    query string is parsed once per request.
    """

    def __init__(self, parameters: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(parameters, *args, **kwargs)
        self._checks = [
            (where, param, CompiledSchema(param.get("schema", param)))
            for where, params in self.parameters.items()
            for param in params
        ]
        self._query_names = {p["name"] for p in self.parameters.get("query", [])}
        self._query_names |= self.security_query_params
        self._has_headers = "header" in self.parameters

    def _query(self, scope: Any) -> dict[str, Any]:
        raw = scope.get("query_string", b"")
        lists: dict[str, list[str]] = {}
        if raw:  # decoded as Starlette's QueryParams does
            for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
                lists.setdefault(name, []).append(value)
        return self.uri_parser.resolve_query(lists)

    def validate(self, scope) -> None:  # type: ignore[no-untyped-def]
        query = self._query(scope)
        path = self.uri_parser.resolve_path(scope.get("path_params", {}))
        scope[PARSED_PARAMS] = (query, path)  # the handler's arguments
        details: dict[str, str] = {}
        if self.strict_validation:
            for name in query:
                if name not in self._query_names:
                    details[f"query.{name}"] = "unknown parameter"
        sources = {
            "query": query,
            "path": path,
            "header": Headers(scope=scope) if self._has_headers else None,
        }
        for where, param, compiled in self._checks:
            values = sources.get(where)
            if values is None:
                continue
            name = param["name"]
            value = values.get(name if where != "path" else name.replace("-", "_"))
            if value is None:
                if param.get("required"):
                    details[f"{where}.{name}"] = "is required"
                continue
            if is_nullable(param) and is_null(value):
                continue
            errors = compiled.errors(value)
            if errors:
                details[f"{where}.{name}"] = excerpt(errors[0].message)
        if details:
            _raise_invalid(details)


class FormValidator(FormDataValidator):
    """Form bodies (the OAuth2 password flow): 422 naming every bad field, like JSON bodies."""

    @functools.cached_property
    def _validator(self) -> Any:  # type: ignore[override]
        return RequestValidator(self._schema, format_checker=_FORMAT_CHECKER)

    def _validate(self, body: Any) -> None:
        details: dict[str, str] = {}
        if self._strict_validation and self._schema.get("additionalProperties") is not True:
            allowed = self._schema.get("properties", {})
            unknown = [name for name in body if name not in allowed]
            details.update({f"body.{name}": "unknown field" for name in unknown})
        details.update(_details("body", list(self._validator.iter_errors(body))))
        if details:
            _raise_invalid(details)


class ValidationOperation(RequestValidationOperation):
    """Connexion's request validation, with what depends only on the operation built once.

    Connexion builds a URI parser, a parameter validator and a body validator on every
    request and matches the media type against the operation's with ``fnmatch``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        operation = self._operation
        self._parameters = self._validator_map["parameter"](
            operation.parameters,
            uri_parser=self._uri_parser(),
            strict_validation=self.strict_validation,
            security_query_params=self.security_query_params,
        )
        self._consumes = MediaTypeDict([(c.lower(), None) for c in operation.consumes])
        self._accepted: dict[str, bool] = {}
        self._body_validators: dict[tuple[str, str], Any] = {}

    def _uri_parser(self, mime: str | None = None) -> Any:
        operation = self._operation
        return operation.uri_parser_class(operation.parameters, operation.body_definition(mime))

    def validate_mime_type(self, mime_type: str) -> None:
        accepted = self._accepted.get(mime_type)
        if accepted is None:
            accepted = not self._operation.consumes or mime_type.lower() in self._consumes
            if len(self._accepted) < 64:  # media types come from clients: keep a few
                self._accepted[mime_type] = accepted
        if not accepted:
            raise UnsupportedMediaTypeProblem(
                detail=f"Invalid Content-type ({mime_type}), expected {self._operation.consumes}"
            )

    def _body_validator(self, mime_type: str, encoding: str) -> Any:
        key = (mime_type, encoding)
        validator = self._body_validators.get(key, _NONE)
        if validator is _NONE:
            validator = None
            operation = self._operation
            schema = operation.body_schema(mime_type)
            try:  # MediaTypeDict: only [] matches media ranges such as */*json
                validator_cls = self._validator_map["body"][mime_type] if schema else None
            except KeyError:
                validator_cls = None
            if validator_cls is not None:
                validator = validator_cls(
                    schema=schema,
                    required=operation.request_body.get("required", False),
                    nullable=is_nullable(operation.body_definition(mime_type)),
                    encoding=encoding,
                    strict_validation=self.strict_validation,
                    uri_parser=self._uri_parser(),
                )
            if len(self._body_validators) < 64:
                self._body_validators[key] = validator
        return validator

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self._parameters.validate(scope)
        mime_type, encoding = self.extract_content_type(scope["headers"])
        self.validate_mime_type(mime_type)
        validator = self._body_validator(mime_type, encoding)
        if validator is not None:
            receive, scope = await validator.wrap_receive(receive, scope=scope)
        await self.next_app(scope, receive, send)


_NONE = object()


class _API(RequestValidationAPI):
    def make_operation(self, operation: Any) -> RequestValidationOperation:
        return ValidationOperation(
            self.next_app,
            operation=operation,
            strict_validation=self.strict_validation,
            validator_map=self.validator_map,
        )


class ValidationMiddleware(RequestValidationMiddleware):
    """Connexion's request validation middleware, on ``ValidationOperation``."""

    api_cls = _API


def validator_map(*, max_json_depth: int = DEFAULT_MAX_JSON_DEPTH) -> dict[str, Any]:
    """Connexion's validator map with Cadre's validators; JSON bodies nest at most so deep."""
    return {
        **CONNEXION_VALIDATORS,
        "parameter": ParamsValidator,
        "body": CONNEXION_VALIDATORS["body"].__class__(
            {
                **dict(CONNEXION_VALIDATORS["body"]),
                "*/*json": functools.partial(BodyValidator, max_json_depth=max_json_depth),
                "application/x-www-form-urlencoded": FormValidator,
            }
        ),
    }
