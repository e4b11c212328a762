"""The scopes a service account's token may carry (its `scope` claim), known to every service
that checks them. Auth accepts only these when an account is created."""

from __future__ import annotations

# Confirm, refund and cancel any purchase: the payment side.
PURCHASES_SETTLE = "purchases:settle"
# Pass the end user's client address in `x-client-address` without the gateway's signature
# (common/access/client_address.py): a backend such as billing acting for its users.
CLIENT_ADDRESS_FORWARD = "client-address:forward"

KNOWN_SCOPES = (PURCHASES_SETTLE, CLIENT_ADDRESS_FORWARD)
