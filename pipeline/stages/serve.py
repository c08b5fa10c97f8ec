"""`python -m pipeline serve [--host H] [--port P] [--allow-remote [NAME ...]]`: the web app on the workspace's
trained models.

Not a DVC stage: it reads what the stages wrote, and serves until stopped.
"""

import ipaddress
import logging
from pathlib import Path

import uvicorn

from pipeline.core.errors import PipelineError
from pipeline.core.params import Params
from pipeline.web.app import create_app

log = logging.getLogger(__name__)
HOST, PORT = "127.0.0.1", 8000


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (localhost or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(params: Params, host: str = HOST, port: int = PORT, allow_remote: list[str] | None = None) -> None:
    """Load the models and serve. Binding beyond loopback needs `allow_remote` (the host names other machines use
    for this one; none: any), and warns; without it, requests named for anything but loopback are refused."""
    if not is_loopback(host):
        if allow_remote is None:
            raise PipelineError(f"--host {host} would serve beyond this machine; add --allow-remote to mean it "
                                "(followed by the names other machines call this one, to refuse any other)")
        log.warning("serving on %s: anyone who can reach this machine's port %d can use the app (no login); "
                    "Host names answered: %s", host, port, ", ".join(allow_remote) or "any")
    remote = None if allow_remote is None else tuple(allow_remote)
    app = create_app(Path.cwd(), params, remote=remote)
    uvicorn.run(app, host=host, port=port, log_level="info")
