"""Loyalty's use cases: one module per aggregate or job, over the store's interfaces."""
