"""The ``stormwatch`` commands: CLI, demo, produce, bench, and the stream simulator they use."""
