"""Workflows: several engine runs composed into one job (the demo, style comparison; later defect synthesis)."""
