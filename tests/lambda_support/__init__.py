"""Test helpers for lambda_trigger: a fault-injecting proxy, shared events, Lambda context."""
