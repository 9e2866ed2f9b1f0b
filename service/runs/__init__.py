"""Runs: the claim-and-launch use case and the process mechanics that take a batch to its outcome."""
