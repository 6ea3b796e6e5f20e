"""The law: its figures, each with its source and where it is measured (``law.py``), and which
conduct a case or penalty has already dealt with (``cases.py``). Imports only ``events``."""
