"""`homa keys create|list|get|revoke`: manage Homa API keys.

PROVISIONAL: no command yet.
"""

from __future__ import annotations

import typer

keys_app = typer.Typer(help="Manage Homa API keys.", no_args_is_help=True)
