"""Security headers on every response: a strict Content-Security-Policy, no framing, no MIME
sniffing, no referrer, and nothing of the API (tokens among it) kept in any cache."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The console and the API page: their own files only, no inline script or style, no framing.
PAGE_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# JSON answers are never a page: nothing may load from them, nothing may frame them.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
_PAGES = ("/admin", "/docs")


_PAGE_PREFIXES = tuple(f"{page}/" for page in _PAGES)


def is_page(path: str) -> bool:
    return path in _PAGES or path.startswith(_PAGE_PREFIXES)


def headers_for(path: str) -> list[tuple[bytes, bytes]]:
    page = is_page(path)
    headers = [
        (b"content-security-policy", (PAGE_POLICY if page else API_POLICY).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    ]
    if not page:  # API answers carry tokens and personal data
        headers.append((b"cache-control", b"no-store"))
    return headers


# Made once: every response gets one of the two.
_PAGE_HEADERS = headers_for("/admin")
_API_HEADERS = headers_for("/")
_PAGE_NAMES = {name for name, _ in _PAGE_HEADERS}
_API_NAMES = {name for name, _ in _API_HEADERS}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = is_page(scope["path"])
        extra = _PAGE_HEADERS if page else _API_HEADERS
        names = _PAGE_NAMES if page else _API_NAMES

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message["headers"] = [*kept, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
