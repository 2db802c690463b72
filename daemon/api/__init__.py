"""HTTP: one Flask blueprint per resource (Modality, Filters, forwarding,
admin, worklist, status page, /metrics, the health probes), authentication, the one error handler,
request bodies and multipart parsing, uploads, large answers sent without
a copy (streamed.py), server-sent events and the status page's static files. Views translate HTTP to calls on the
services; they hold no state of their own."""
