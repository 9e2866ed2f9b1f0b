"""Test helpers for lambda_trigger: a fault-injecting proxy, sample events, Lambda context."""
