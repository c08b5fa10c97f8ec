"""Who may reach the app: requests named for this machine only (no DNS rebinding), and no POSTs from other sites."""

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def allowed_hosts(remote: tuple[str, ...] | None) -> list[str]:
    """The Host names the app answers: loopback's, and the `remote` names (None: loopback only; empty: any name)."""
    if remote is None:
        return list(LOOPBACK_NAMES)
    return [*LOOPBACK_NAMES, *remote] if remote else ["*"]


def cross_site(method: str, headers: Headers) -> str | None:
    """Why a browser's request from another site must be refused, or None: only reads may come from elsewhere."""
    if method in SAFE_METHODS:
        return None
    if headers.get("sec-fetch-site") == "cross-site":
        return "cross-site request refused (Sec-Fetch-Site: cross-site): use the app's own page"
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != headers.get("host"):
        return f"request from another origin ({origin}) refused: use the app's own page"
    return None


class RefuseCrossSite:
    """ASGI middleware: a POST (or any write) that a browser marks as coming from another site gets 403 and why."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason = cross_site(scope["method"], Headers(scope=scope)) if scope["type"] == "http" else None
        if reason is None:
            await self.app(scope, receive, send)
            return
        await JSONResponse({"detail": reason}, status_code=403)(scope, receive, send)
