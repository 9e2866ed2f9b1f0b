"""Demo and development tooling: the local demo, a gunicorn launcher for tests, a Slack stand-in."""
