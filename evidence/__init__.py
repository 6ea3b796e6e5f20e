"""Evidence for prosecutors: the raw events behind each alert, in a signed Merkle log.

``merkle`` (RFC 9162 hashing and proofs), ``log`` (the append-only log on disk and its signed
tree heads), ``recorder`` (what each alert version cites), ``stream`` (the order the worker and
``replay`` log in, one tree per platform as records), ``bundle`` (export and offline
verification). Imports nothing of Faust, so any mode can feed a recorder.
"""
