"""Database access shared by the CLI, the workers and the app: connections and migrations."""

from core.db.connect import connect
from core.db.migrate import Flavour, MigrationReport, migrate, migration_status

__all__ = ["Flavour", "MigrationReport", "connect", "migrate", "migration_status"]
