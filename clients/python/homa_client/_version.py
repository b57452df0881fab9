"""The client package version (sent in the gRPC user agent)."""

__version__ = "0.1.0"
