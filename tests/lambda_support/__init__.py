"""Test helpers for lambda_trigger: a Slack receiver, a fault-injecting proxy, shared events."""
