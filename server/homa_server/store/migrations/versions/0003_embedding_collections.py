"""Semantic search collections and their documents.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embedding_collections",
        sa.Column("collection_id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("embedding_model", sa.String(length=256), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("dimensions_param", sa.Integer(), nullable=True),
        sa.Column("distance_metric", sa.Integer(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("document_count", sa.BigInteger(), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", name=op.f("pk_embedding_collections")),
    )
    with op.batch_alter_table("embedding_collections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_embedding_collections_tenant_name"), ["tenant", "name"], unique=True
        )
    op.create_table(
        "embedding_documents",
        sa.Column("collection_id", sa.String(length=64), nullable=False),
        sa.Column("document_id", sa.String(length=256), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["embedding_collections.collection_id"],
            name=op.f("fk_embedding_documents_collection_id_embedding_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("collection_id", "document_id", name=op.f("pk_embedding_documents")),
    )


def downgrade() -> None:
    op.drop_table("embedding_documents")
    with op.batch_alter_table("embedding_collections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_embedding_collections_tenant_name"))
    op.drop_table("embedding_collections")
