"""Workflows: several engine runs composed into one job (style comparison; later defect synthesis, video)."""
