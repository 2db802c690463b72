"""Forwarding to central platforms: the rules that pick what goes where, the
durable outbox (SQLite), the delivery loop with its retries, and one adapter
per platform kind under platforms/."""
