"""All of auth's SQL, one module per aggregate."""
