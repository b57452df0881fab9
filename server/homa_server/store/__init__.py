"""Durable storage: SQLAlchemy 2 async tables and repositories, Alembic migrations, the outbox."""
