"""Homa: an AI gateway delivered as a gRPC microservice (server package)."""

__version__ = "0.1.0"
