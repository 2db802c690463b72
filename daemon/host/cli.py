"""`sensord serve | hash-password | default-config`, and the operator commands of client_cli."""
from __future__ import annotations

import argparse
import functools
import getpass
import logging
import signal
import sys
import threading
from pathlib import Path

from sensord.daemon import settings as settings_mod

from . import logsetup, state_lock

# config/ sits beside daemon/ both in the checkout and in the installed
# package (sensord/config/), so one relative path serves editable and wheel.
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "sensord.toml"


def serve(args) -> int:
    from sensord.daemon.app import create_app
    from sensord.daemon.service import Sensord

    from .lifecycle import Lifecycle
    from .server import Server
    from .shutdown import GracefulStop

    def load():
        return settings_mod.load(args.config, overrides={
            "server.host": args.host, "server.port": args.port, "store.state_dir": args.state_dir})

    try:
        settings = load()
    except settings_mod.SettingsError as err:
        print(f"sensord: {err}", file=sys.stderr)
        return 2
    logsetup.configure(settings.log)
    log = logging.getLogger("sensord")
    # The state folder is this process's alone, locked before anything in it
    # is touched: a second start must not clear a running daemon's images.
    state_lock.private_files()
    try:
        held = state_lock.lock_state_folder(settings.store.state_dir)
    except state_lock.StateFolderBusy as err:
        print(f"sensord: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"sensord: cannot use the state folder {settings.store.state_dir}: {err}", file=sys.stderr)
        return 2
    # (held until the process ends: the kernel releases the lock then)
    log.debug("state folder %s locked (%s)", held.folder, state_lock.LOCK_FILE)
    try:
        daemon = Sensord(settings)
    except ValueError as err:       # a forward target or rule that cannot work
        print(f"sensord: {err}", file=sys.stderr)
        return 2
    daemon.start()
    try:
        server = Server(create_app(daemon), settings)
    except ValueError as err:       # the TLS certificate or key
        log.error("%s", err)
        daemon.close()
        return 2
    except OSError as err:
        log.error("cannot listen on %s:%s: %s", settings.server.host, settings.server.port, err)
        daemon.close()
        return 1

    life = Lifecycle(daemon, server)      # what systemd is told (nothing without it)
    stop = GracefulStop(daemon, server, life, settings.server.shutdown_seconds)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, functools.partial(_on_hup, daemon, load, life, server.front))
    log.info("listening on %s://%s:%s, state in %s", server.scheme, settings.server.host,
             server.port, settings.store.state_dir)
    life.ready()        # the socket listens and the drivers have enumerated
    try:
        server.run()
    finally:
        life.close()
        stop.close()
    log.info("stopped")
    return 0


_reloading = threading.Lock()


def _on_hup(daemon, load, life, front, signum, frame) -> None:
    """SIGHUP: reload in a thread of its own (the handler interrupts the server loop)."""
    from .reload import reload

    def run():
        with _reloading:
            life.reloading()
            reload(daemon, load, front)
            life.reloaded()

    logging.getLogger("sensord").info("SIGHUP: reading the configuration again")
    threading.Thread(target=run, name="reload", daemon=True).start()


def hash_password(args) -> int:
    from sensord.daemon.api.auth import hash_password as make_hash

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("sensord: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("sensord: empty password", file=sys.stderr)
        return 2
    print(make_hash(password))
    return 0


def default_config(args) -> int:
    """Print the documented default configuration that ships in the package,
    so an install from a wheel has it without the source tree."""
    sys.stdout.write(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    return 0


SERVE = """\
Run the daemon: the DSIO Modality and Filters APIs, sensord's own API and the
status page on [server] host and port (http://127.0.0.1:43809 by default),
the sensor drivers, forwarding. State (images, outbox, admin-password) lives
in [store] state_dir. SIGTERM stops it gracefully, SIGHUP reloads the
configuration."""

SERVE_ENVIRONMENT = """\
environment:
  STATE_DIRECTORY   the state folder when neither --state-dir nor [store] state_dir
                    names one (systemd sets it from StateDirectory=); else ./state
  NOTIFY_SOCKET, WATCHDOG_USEC
                    set by systemd (Type=notify, WatchdogSec=): readiness,
                    status line and watchdog pings
"""


def main(argv: list[str] | None = None) -> int:
    from . import client_cli
    parser = argparse.ArgumentParser(
        prog="sensord", description="X-ray sensor acquisition daemon, and the commands that drive it.",
        epilog="`sensord COMMAND --help` says more. The operator commands read:\n\n" + client_cli.ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the daemon", description=SERVE, epilog=SERVE_ENVIRONMENT,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML settings file (default: embedded defaults)")
    p.add_argument("--host", help="listen address (overrides server.host)")
    p.add_argument("--port", type=int, help="listen port (overrides server.port)")
    p.add_argument("--state-dir", help="state folder (overrides store.state_dir)")
    p.set_defaults(func=serve)
    p = sub.add_parser("hash-password", help="read a password, print its hash for [auth.users]")
    p.set_defaults(func=hash_password)
    p = sub.add_parser("default-config", help="print the documented default configuration file")
    p.set_defaults(func=default_config)
    client_cli.add_parsers(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
