"""Limiter storage: `memory` (one process) and `redis` (shared by replicas), same semantics."""
