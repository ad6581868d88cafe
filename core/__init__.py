"""The core layer: what every running part of irtmon shares with the outside world.

Settings (:mod:`core.settings`), database connections and migrations and ALL of irtmon's SQL
(:mod:`core.db`, one module per table family; functions take an open connection and never
commit), the Kafka publisher (:mod:`core.publish`), the one alert lifecycle
(:mod:`core.alerts`) and path checks (:mod:`core.paths`).

It imports ``schemas`` and ``models`` only; ``streams``, ``monitoring_app``, ``pacs`` and
``clinic`` import it, and never each other.
"""
