#!/usr/bin/env bash
# Regenerate models_gen/api.py from openapi.yaml (or into $1, for the staleness test).
set -euo pipefail
out="${1:-models_gen/api.py}"
datamodel-codegen --input openapi.yaml --input-file-type openapi --output "$out" \
  --output-model-type pydantic_v2.BaseModel --target-python-version 3.11 \
  --use-standard-collections --use-union-operator --field-constraints --use-annotated --strict-nullable \
  --collapse-root-models --openapi-scopes schemas paths parameters --disable-timestamp \
  --output-datetime-class AwareDatetime --formatters black isort 2>/dev/null
