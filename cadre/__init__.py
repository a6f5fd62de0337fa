"""Cadre: a self-hostable control plane for LLM agents."""

import warnings

__version__ = "0.1.0"

# Connexion imports Starlette's test client when it is imported (for a test helper a server
# never uses), and Starlette then tells every server's log to install httpx2.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
