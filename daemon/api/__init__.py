"""HTTP: one Flask blueprint per resource (Modality, Filters, forwarding,
admin, status page), authentication, the one error handler, request bodies
and multipart parsing, uploads, server-sent events and the status page's
static files. Views translate HTTP to calls on the services; they hold no
state of their own."""
