"""Forwarding to central platforms: the rules that pick what goes where, the
durable outbox (SQLite; its table in outbox_table, its committing
state in outbox_commitment), the delivery loop with its retries, one adapter
per platform kind under platforms/, and the listener for the storage
commitment reports of DICOM archives (commitment)."""
