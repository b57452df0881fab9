"""Load benchmark for the Homa gateway: a fast mock OpenAI upstream and an h2load-driven harness.

Run it with `make bench` (or `.venv/bin/python -m bench.run`); see bench/README.md.
"""
