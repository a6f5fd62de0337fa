"""LLM providers: one module per API, all speaking ``base.Provider``."""
