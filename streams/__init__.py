"""The running service: publishing, sinks to the database (and, with the streaming issue, the
Faust app and its agents, dead-lettering and alert delivery)."""
