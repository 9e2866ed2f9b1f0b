"""The HTTP edge: the blueprint, token verification, the Flask extension and the app factory."""
