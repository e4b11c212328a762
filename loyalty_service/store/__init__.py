"""All of loyalty's SQL, one module per aggregate."""
