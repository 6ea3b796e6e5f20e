"""The law's figures and the regulator-order ledger. Imports only ``events``."""
