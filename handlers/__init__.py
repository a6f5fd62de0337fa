"""Connexion handlers: one module per tag of openapi.yaml, one function per operationId.

``getAgent`` tagged ``agents`` is ``handlers.agents.get_agent`` (see ``cadre/resolver.py``).
"""
