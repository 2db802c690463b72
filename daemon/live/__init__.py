"""What is pushed to clients as it happens: the publish/subscribe hub behind
every server-sent event stream, and the status page's feed and snapshot."""
