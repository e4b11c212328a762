"""Auth's use cases, one module per aggregate: accounts and sessions."""
