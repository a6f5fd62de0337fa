"""Connexion handlers: one module per tag of openapi.yaml, one function per operationId."""
