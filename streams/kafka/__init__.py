"""The Faust worker: app wiring, ingest and stage agents, the watchdog, table state and the
cluster view the API reads."""
