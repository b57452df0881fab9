"""Sub-commands of the `homa` CLI, one module per area (cli.py assembles them)."""
