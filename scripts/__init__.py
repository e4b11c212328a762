"""Developer scripts (code generation, checks)."""
