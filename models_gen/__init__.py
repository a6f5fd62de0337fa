"""Pydantic models generated from openapi.yaml by `make gen`; never edit by hand."""
