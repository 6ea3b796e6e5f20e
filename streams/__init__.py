"""How events reach detectors: the engine (routing, watermark, timers, duplicates), the local
pipeline, partitioned replay, the registry and the settings. ``streams.kafka`` runs the same
engine as Faust workers; ``streams.outputs`` is where alerts leave (webhooks, Alertmanager, API,
dashboard). Commands live in the ``commands`` package."""
