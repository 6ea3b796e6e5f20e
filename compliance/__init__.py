"""The law's figures, each with its source and where it is measured (``law.py``). Imports nothing else of Stormwatch."""
