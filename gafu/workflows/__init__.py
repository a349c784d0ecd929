"""Workflows: several library calls composed into one task (the demo, comparisons), each a plain function."""
