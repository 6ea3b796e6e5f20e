"""Offline work that builds what the runtime package ships (not installed with it)."""
