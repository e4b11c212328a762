"""Who the caller is and what it may do: access tokens, revocation, address trust, throttles."""
