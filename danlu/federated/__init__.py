"""Federated training on Flower: danlu's training step is a client's local training, danlu's evaluation the
server's. ``partition`` (numpy only) splits a recipe's training data among simulated clients; ``client``,
``server`` and ``simulation`` need Flower, which lives in its own environment (``make federated-setup``):
its pins (fastapi, uvicorn, rich, starlette, protobuf) conflict with the serving stack's.
"""

from __future__ import annotations

FLOWER_VERSION = "1.42.0"
SETUP_HINT = ("Flower lives in its own environment (its pins conflict with danlu's serving stack): run "
              "`make federated-setup`, then `.venv-flower/bin/danlu federate ...`")


def require_flower() -> None:
    """Import Flower or say exactly how to get it (exit 2, not a traceback)."""
    try:
        import flwr  # noqa: F401
    except ImportError:
        from danlu.errors import DanluError

        raise DanluError("danlu federate needs Flower (flwr), which is not installed in this environment",
                         hint=SETUP_HINT) from None
