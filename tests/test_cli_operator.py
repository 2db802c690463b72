"""The operator commands against a real daemon: which daemon and password
they find, what they say when something fails, ids by prefix, the simulator's
controls. Run in this process (``cli.main``) for speed; tests/test_readme.py
runs them as subprocesses the way the README does."""
from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from sensord.daemon.host import cli, cli_http, unit_file
from tests.support.loopback import closed_port_url, serving, wait_until
from tests.support.modality import API, create_session, devices, put_info, state_is, subscribe_status
from tests.support.server import CLIENT, CLIENT_PASSWORD, PASSWORD, USER, make_settings, running

ENV = ("SENSORD_USER", "SENSORD_PASSWORD", "SENSORD_CONFIG", "STATE_DIRECTORY", "SENSORD_DEBUG",
       "REQUESTS_CA_BUNDLE")


@pytest.fixture(autouse=True)
def shell(monkeypatch, tmp_path):
    """An operator's shell: no sensord variables, no unit installed, a folder of its own."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SENSORD_UNIT", str(tmp_path / "no-such.service"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)


def sensord(capsys, *words) -> tuple[int, str, str]:
    code = cli.main(list(words))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_failure(code: int, err: str) -> str:
    """The failure was one line on stderr, no traceback, a non-zero exit: that line."""
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sensord: "), err
    return lines[0]


def admin_daemon(serve, state: Path, **sections):
    """A daemon with no configured users: it makes `admin` and writes state/admin-password."""
    return serve(state_dir=state, auth={"users": {}}, **sections)


def config_file(folder: Path, text: str) -> str:
    path = folder / "sensord.toml"
    path.write_text(text)
    return str(path)


# -- which daemon, which password ---------------------------------------------

def test_the_state_folder_comes_from_the_config_from_any_folder(serve, tmp_path, capsys):
    state = tmp_path / "srv" / "state"
    srv = admin_daemon(serve, state)
    config = config_file(tmp_path, f'[server]\nport = {srv.server.port}\n[store]\nstate_dir = "{state}"\n')
    code, out, err = sensord(capsys, "status", "--config", config)
    assert code == 0, err
    assert f"sensord at http://127.0.0.1:{srv.server.port}" in out and "devices (3):" in out


def test_the_state_folder_of_a_service_install_comes_from_its_unit(serve, tmp_path, capsys, monkeypatch):
    """No state_dir in the config, no $STATE_DIRECTORY in the shell: the
    unit's StateDirectory= under /var/lib, as systemd gives the service."""
    monkeypatch.setattr(unit_file, "STATE_ROOT", tmp_path / "var-lib")
    srv = admin_daemon(serve, tmp_path / "var-lib" / "sensord")
    # What the README installs: `sensord default-config > /etc/sensord/sensord.toml` (the port aside).
    assert cli.main(["default-config"]) == 0
    shipped_config = capsys.readouterr().out
    assert '\nport = 43809\n' in shipped_config and '\nstate_dir = ""\n' in shipped_config
    config = config_file(tmp_path, shipped_config.replace("\nport = 43809\n", f"\nport = {srv.server.port}\n"))
    unit = tmp_path / "sensord.service"
    shipped = (Path(__file__).resolve().parents[1] / "systemd" / "sensord.service").read_text()
    unit.write_text(shipped.replace("--config /etc/sensord/sensord.toml", f"--config {config}"))
    monkeypatch.setenv("SENSORD_UNIT", str(unit))

    code, out, err = sensord(capsys, "devices", "--config", config)
    assert code == 0, err
    assert len(out.strip().splitlines()) == 3

    # A unit that serves another config says nothing about this one: ./state of this shell.
    unit.write_text(shipped)
    line = one_line_failure(*sensord(capsys, "devices", "--config", config)[::2])
    assert "no password" in line and str(Path.cwd() / "state" / "admin-password") in line
    assert "SENSORD_PASSWORD" in line


def test_state_dir_flag_and_state_directory(serve, tmp_path, capsys, monkeypatch):
    state = tmp_path / "somewhere" / "state"
    srv = admin_daemon(serve, state)
    code, _, err = sensord(capsys, "status", "--url", srv.base, "--state-dir", str(state))
    assert code == 0, err
    monkeypatch.setenv("STATE_DIRECTORY", str(state))       # as inside the service
    code, _, err = sensord(capsys, "status", "--url", srv.base)
    assert code == 0, err


def test_user_and_password_from_the_environment(serve, capsys, monkeypatch):
    srv = serve()
    monkeypatch.setenv("SENSORD_USER", USER)
    monkeypatch.setenv("SENSORD_PASSWORD", PASSWORD)
    code, out, err = sensord(capsys, "devices", "--url", srv.base)
    assert code == 0, err
    assert len(out.splitlines()) == 3


def test_a_wrong_password_says_so_and_where_it_came_from(serve, tmp_path, capsys, monkeypatch):
    state = tmp_path / "state"
    srv = admin_daemon(serve, state)
    monkeypatch.setenv("SENSORD_PASSWORD", "not it")
    line = one_line_failure(*sensord(capsys, "status", "--url", srv.base)[::2])
    assert "wrong user or password" in line and "'admin'" in line and "$SENSORD_PASSWORD" in line
    assert "cannot reach" not in line

    monkeypatch.delenv("SENSORD_PASSWORD")
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "admin-password").write_text("an old one\n")
    line = one_line_failure(*sensord(capsys, "status", "--url", srv.base, "--state-dir", str(stale),
                                     "--user", "admin")[::2])
    assert "wrong user or password" in line and str(stale / "admin-password") in line and "--user" in line


def test_cannot_reach_only_when_nothing_answers(capsys, monkeypatch):
    monkeypatch.setenv("SENSORD_PASSWORD", "x")
    url = closed_port_url()
    line = one_line_failure(*sensord(capsys, "status", "--url", url)[::2])
    assert f"cannot reach the daemon at {url}" in line and "refused" in line


# -- every failure: one line, no traceback -------------------------------------

@pytest.fixture(scope="module")
def daemons(tmp_path_factory, pki):
    """A plain and an HTTPS daemon for the failure table, and a few that are not sensord."""
    folder = tmp_path_factory.mktemp("daemons")
    plain = make_settings(folder / "plain")
    tls = make_settings(folder / "tls", server={"tls_cert": pki.cert, "tls_key": pki.key})
    listener = socket.socket()                  # takes connections, never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def not_json(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html>some other program</html>"]

    with contextlib.ExitStack() as stack:
        stack.callback(listener.close)
        yield {"plain": stack.enter_context(running(plain)), "tls": stack.enter_context(running(tls)),
               "html": stack.enter_context(serving(not_json)),
               "silent": f"http://127.0.0.1:{listener.getsockname()[1]}", "pki": pki, "folder": folder}


def _tls_config(d, cert: str) -> list[str]:
    port = d["tls"].server.port
    return ["--config", config_file(d["folder"], f'[server]\nport = {port}\ntls_cert = "{cert}"\n'
                                                 f'tls_key = "{cert}"\n')]


FAILURES = {
    # name: (words after the command given the daemons, environment, what the line says)
    "missing config": (lambda d: ["--config", "/nonexistent/sensord.toml"], {}, "cannot read config"),
    "config not TOML": (lambda d: ["--config", config_file(d["folder"], "[server\n")], {}, "not valid TOML"),
    "unknown key": (lambda d: ["--config", config_file(d["folder"], "[store]\nlifetime = 5\n")], {},
                    "store.lifetime"),
    "no password file": (lambda d: ["--url", d["plain"].base], {"SENSORD_PASSWORD": ""}, "no password"),
    "wrong password": (lambda d: ["--url", d["plain"].base], {"SENSORD_PASSWORD": "nope"},
                       "wrong user or password"),
    "a client, not an operator": (lambda d: ["--url", d["plain"].base],
                                  {"SENSORD_USER": CLIENT, "SENSORD_PASSWORD": CLIENT_PASSWORD}, "operator role"),
    "nothing listens": (lambda d: ["--url", closed_port_url()], {}, "cannot reach the daemon"),
    "listens, never answers": (lambda d: ["--url", d["silent"]], {}, "did not answer within"),
    "another program": (lambda d: ["--url", d["html"]], {}, "not sensord's"),
    "not a URL": (lambda d: ["--url", "localhost:43809"], {}, "cannot use the URL"),
    "https to a plain daemon": (lambda d: ["--url", d["plain"].base.replace("http:", "https:")], {},
                                "no TLS handshake"),
    "plain http to the TLS port": (lambda d: ["--url", d["tls"].base.replace("https:", "http:")], {},
                                   "without an answer"),
    "self-signed, not trusted": (lambda d: ["--url", d["tls"].base], {}, "--cacert"),
    "the wrong certificate": (lambda d: ["--url", d["tls"].base, "--cacert", d["pki"].other_cert], {},
                              "does not trust"),
    "--cacert unreadable": (lambda d: ["--url", d["tls"].base, "--cacert", "/nonexistent.pem"], {},
                            "cannot read the daemon's certificate /nonexistent.pem"),
    "tls_cert unreadable": (lambda d: _tls_config(d, "/nonexistent/tls.crt"), {},
                            "cannot read the daemon's certificate /nonexistent/tls.crt"),
    "service stopped, credential gone": (
        lambda d: _tls_config(d, "/run/credentials/sensord.service/tls.crt"), {}, "is it running?"),
}


@pytest.mark.parametrize("name", FAILURES)
@pytest.mark.parametrize("command", ["status", "devices", "outbox"])
def test_every_failure_is_one_line(daemons, capsys, monkeypatch, name, command):
    monkeypatch.setattr(cli_http, "TIMEOUT", 0.5)
    words, env, says = FAILURES[name]
    env = {"SENSORD_USER": USER, "SENSORD_PASSWORD": PASSWORD, **env}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    line = one_line_failure(*sensord(capsys, command, *words(daemons))[::2])
    assert says in line, line


def test_refusals_and_bad_arguments_are_one_line(serve, capsys, monkeypatch):
    srv = serve()
    monkeypatch.setenv("SENSORD_USER", USER)
    monkeypatch.setenv("SENSORD_PASSWORD", PASSWORD)
    dev = devices(srv)[0]["deviceId"]
    line = one_line_failure(*sensord(capsys, "expose", dev[:6], "--url", srv.base)[::2])
    assert "expose failed (409)" in line                    # not armed
    line = one_line_failure(*sensord(capsys, "expose", "zz", "--url", srv.base)[::2])
    assert "no device 'zz'" in line and dev in line
    code, _, err = sensord(capsys, "outbox", "retry", "--url", srv.base)
    assert code == 2 and "needs an entry id" in one_line_failure(code, err)
    line = one_line_failure(*sensord(capsys, "outbox", "drop", "999", "--url", srv.base)[::2])
    assert "outbox drop failed (404)" in line


def test_an_unexpected_error_is_one_line_unless_debugging(serve, capsys, monkeypatch):
    from sensord.daemon.host import client_cli

    srv = serve()
    monkeypatch.setenv("SENSORD_USER", USER)
    monkeypatch.setenv("SENSORD_PASSWORD", PASSWORD)

    def broken(listed):
        raise KeyError("deviceId")
    monkeypatch.setattr(client_cli, "_device_lines", broken)
    line = one_line_failure(*sensord(capsys, "devices", "--url", srv.base)[::2])
    assert "unexpected error (KeyError)" in line and "SENSORD_DEBUG" in line
    monkeypatch.setenv("SENSORD_DEBUG", "1")
    code, _, err = sensord(capsys, "devices", "--url", srv.base)
    assert code == 1 and "Traceback" in err


# -- devices by prefix, the simulator's controls --------------------------------

@pytest.fixture
def operator(serve, monkeypatch, capsys):
    def start(**sections):
        srv = serve(**sections)
        monkeypatch.setenv("SENSORD_USER", USER)
        monkeypatch.setenv("SENSORD_PASSWORD", PASSWORD)

        def run(*words):
            return sensord(capsys, *words, "--url", srv.base)
        return srv, run
    return start


def test_devices_say_no_sensor_once(operator):
    srv, run = operator()
    dev = devices(srv)[0]["deviceId"]
    assert run("unplug-sensor", dev[:8])[0] == 0
    code, out, err = run("devices")
    assert code == 0, err
    [line] = [line for line in out.splitlines() if line.startswith(dev)]
    assert line.count("(no sensor)") == 1, line


def test_plug_by_prefix_after_unplug(operator):
    srv, run = operator()
    dev = devices(srv)[1]["deviceId"]
    code, out, err = run("unplug", dev[:8])
    assert code == 0 and f"unplug: done on {dev}" in out, err
    assert dev not in [d["deviceId"] for d in devices(srv)]
    assert f"{dev}  unplugged" in run("devices")[1]
    code, out, err = run("plug", dev[:8])
    assert code == 0 and f"plug: done on {dev}" in out, err
    assert wait_until(lambda: dev in [d["deviceId"] for d in devices(srv)])


def test_an_ambiguous_prefix_is_refused_naming_the_candidates(operator):
    srv, run = operator(drivers={"urls": ["sim://?time_scale=0.01&devices=17"]})
    ids = [d["deviceId"] for d in devices(srv)]
    first = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) >= 2)   # 17 ids, 16 digits
    candidates = [i for i in ids if i.startswith(first)]
    code, _, err = run("expose", first)
    line = one_line_failure(code, err)
    assert code == 2 and "ambiguous" in line and all(i in line for i in candidates)


def test_the_simulators_controls(operator):
    srv, run = operator()
    dev = next(d for d in devices(srv) if d["modelName"])["deviceId"]
    status = lambda: next(d["status"] for d in devices(srv) if d["deviceId"] == dev)  # noqa: E731

    assert run("fault", dev[:8], "--detail", "cable chewed")[0] == 0
    assert status() == "Error"
    assert run("clear-fault", dev[:8])[0] == 0
    assert wait_until(lambda: status() == "Available")
    assert run("recalibrate", dev[:8])[0] == 0
    assert run("restart", dev[:8])[0] == 0
    assert wait_until(lambda: len(devices(srv)) == 3)

    sid = create_session(srv, dev)["sessionId"]
    stream = subscribe_status(srv, sid)
    assert run("busy-next-arm", dev[:8], "--count", "1")[0] == 0
    put_info(srv, sid, enable=True)
    stream.until(state_is("Ready"), timeout=10)        # re-armed after the refused arm
    assert run("expose", dev[:8])[0] == 0
    stream.until(state_is("NewImage"), timeout=10)
    assert srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()["totalImages"] == 1


# -- help ---------------------------------------------------------------------

def test_help_documents_the_environment(capsys):
    for words in (["status", "--help"], ["--help"]):
        with pytest.raises(SystemExit) as done:
            cli.main(words)
        assert done.value.code == 0
        out = capsys.readouterr().out
        for variable in ("SENSORD_USER", "SENSORD_PASSWORD", "SENSORD_CONFIG", "STATE_DIRECTORY",
                         "SENSORD_UNIT", "StateDirectory=", "/var/lib/sensord"):
            assert variable in out, (words, variable)
    with pytest.raises(SystemExit):
        cli.main(["status", "--help"])
    assert "--user USER           an operator to log in as" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "Run the daemon" in out and "STATE_DIRECTORY" in out


# -- the unit file as systemd reads it -----------------------------------------

def test_the_unit_file_with_its_drop_ins(tmp_path, monkeypatch):
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    for folder in (etc, lib):
        (folder / "sensord.service.d").mkdir(parents=True)
    monkeypatch.setattr(unit_file, "UNIT_DIRS", (str(etc), str(lib)))
    (lib / "sensord.service").write_text(
        "[Unit]\nStateDirectory=not-this-section\n[Service]\n# ExecStart=/commented\n"
        "ExecStart=-/opt/sensord/bin/sensord serve \\\n    --config '/etc/sensord/my config.toml'\n"
        "StateDirectory=sensord cache\nLoadCredential=tls.crt:/etc/sensord/tls.crt\n")
    (lib / "sensord.service.d" / "10-port.conf").write_text("[Service]\nExecStart=\nExecStart=/x serve --port=4444\n")
    (etc / "sensord.service.d" / "10-port.conf").write_text(         # hides the one of the same name in lib
        "[Service]\nExecStart=\nExecStart=/x serve --config=/c.toml --port=5555\n")
    (etc / "sensord.service.d" / "20-state.conf").write_text("[Service]\nStateDirectory=\nStateDirectory=op2\n")

    assert unit_file.find("sensord.service") == lib / "sensord.service"
    unit = unit_file.read(lib / "sensord.service")
    assert unit.option("--config") == "/c.toml" and unit.option("--port") == "5555"
    assert unit.state_folder == unit_file.STATE_ROOT / "op2"
    assert unit.credential_source("/run/credentials/sensord.service/tls.crt") == "/etc/sensord/tls.crt"
    assert unit.credential_source("/elsewhere/tls.crt") is None

    for drop_in in (etc / "sensord.service.d").iterdir():
        drop_in.unlink()
    (lib / "sensord.service.d" / "10-port.conf").unlink()
    unit = unit_file.read(lib / "sensord.service")
    assert unit.option("--config") == "/etc/sensord/my config.toml" and unit.option("--port") is None
    assert unit.exec_start[0] == "/opt/sensord/bin/sensord"             # the "-" prefix is systemd's
    assert unit.state_folder == unit_file.STATE_ROOT / "sensord"        # the first folder listed
