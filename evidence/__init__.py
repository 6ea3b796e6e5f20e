"""Evidence for prosecutors: the raw events behind each alert, in a signed Merkle log.

``merkle`` (RFC 9162 hashing and proofs), ``log`` (the append-only log on disk and its signed
tree heads), ``recorder`` (what each alert version cites), ``bundle`` (export and offline
verification). Imports nothing of Faust, so any mode can feed a recorder.
"""
