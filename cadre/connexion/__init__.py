"""Cadre's adapter to Connexion 3.3: the only code that touches Connexion's internals."""
