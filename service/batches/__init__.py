"""Shipped batch jobs; every module dropped into this package is imported at start."""
