"""Peewee models and queries, one module per resource."""
