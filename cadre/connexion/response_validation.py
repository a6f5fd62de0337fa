"""Response validation that reads ``nullable: true`` beside ``allOf`` as generators do.

``stop_reason: {nullable: true, allOf: [$ref: StopReason]}`` is OpenAPI 3.0's way to
reference a named schema and allow null; openapi-typescript, openapi-python-client and
datamodel-code-generator all read it as ``StopReason | null``. Connexion honours
``nullable`` only beside ``type`` and ``enum``, so its response validator would refuse
the null: this one lets null through ``allOf`` too when ``nullable`` says so.
"""

from __future__ import annotations

from typing import Any

from connexion.json_schema import Draft4ResponseValidator, allow_nullable
from connexion.validators import VALIDATOR_MAP as CONNEXION_VALIDATORS
from connexion.validators.json import JSONResponseBodyValidator
from jsonschema import Draft4Validator
from jsonschema.validators import extend

_Validator = extend(
    Draft4ResponseValidator, {"allOf": allow_nullable(Draft4Validator.VALIDATORS["allOf"])}
)


class NullableRefResponseValidator(JSONResponseBodyValidator):
    @property
    def validator(self) -> Any:
        return _Validator(self._schema, format_checker=Draft4Validator.FORMAT_CHECKER)


RESPONSE_VALIDATORS = CONNEXION_VALIDATORS["response"].__class__(
    {**dict(CONNEXION_VALIDATORS["response"]), "*/*json": NullableRefResponseValidator}
)
