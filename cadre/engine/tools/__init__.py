"""Built-in tools agents can call; each is confined to the caller's workspace."""
