"""Persistence: SQLAlchemy tables, the endpoint repository and Alembic migrations."""
