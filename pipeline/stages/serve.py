"""`python -m pipeline serve [--host H] [--port P] [--allow-remote]`: the web app on the workspace's trained models.

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


def main(params: Params, host: str = HOST, port: int = PORT, allow_remote: bool = False) -> None:
    """Load the models and serve; binding beyond loopback needs `allow_remote`, and warns."""
    if not is_loopback(host):
        if not allow_remote:
            raise PipelineError(f"--host {host} would serve beyond this machine; add --allow-remote to mean it")
        log.warning("serving on %s: anyone who can reach this machine's port %d can use the app (no login)",
                    host, port)
    app = create_app(Path.cwd(), params)
    uvicorn.run(app, host=host, port=port, log_level="info")
