"""The daemon as a process on its host: the command line (serve and the
operator commands), the waitress server and TLS front, graceful stop on
SIGTERM, reload on SIGHUP, sd_notify and the watchdog's health check, and
logging."""
