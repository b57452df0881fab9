"""Data-protection building blocks: redaction, the outbound-URL SSRF guard, encryption at rest.

* `homa_server.security.redaction`: mask secrets and personal data in text, structures and log records.
* `homa_server.security.ssrf`: check caller-supplied URLs and fetch them over a pinned connection.
* `homa_server.security.crypto`: AES-256-GCM envelopes under a rotating keyring.

See docs/security-data-protection-design.md for the settings and the wiring plan.
"""
