"""`python -m homa_server` is the `homa` command."""

from homa_server.cli import main

main()
