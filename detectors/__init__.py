"""Detectors over the post, engagement and report streams (water army, viral spread,
targets under attack). Each implements :class:`events.Detector`; none imports Faust.

The registry of what runs is :func:`streams.registry.build_detectors`.
"""
