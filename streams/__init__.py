"""Plumbing on top: engine routing and watermark, local runner, Faust app, CLI, simulator."""
