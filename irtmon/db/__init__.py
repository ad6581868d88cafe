"""Database access shared by the CLI, the workers and the app: connections and migrations."""

from irtmon.db.connect import connect
from irtmon.db.migrate import Flavour, MigrationReport, migrate, migration_status

__all__ = ["Flavour", "MigrationReport", "connect", "migrate", "migration_status"]
