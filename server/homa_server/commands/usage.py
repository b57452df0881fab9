"""`homa usage`: aggregated usage and cost, as a table, JSON, CSV or XML.

PROVISIONAL: no command yet.
"""

from __future__ import annotations

import typer

usage_app = typer.Typer(help="Show usage and cost.", no_args_is_help=True)
