"""Where findings are decided: the water army, cascades and legal figures, targets under attack,
and the regulator-order ledger (``orders.py``, with its read model in ``order_view.py``). Each
detector implements :class:`events.Detector`; none imports Faust.

The registry of what runs is :func:`streams.registry.build_detectors`.
"""
