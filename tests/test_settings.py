"""Settings: embedded defaults, the documented file, overrides and refusals."""
from __future__ import annotations

from pathlib import Path

import pytest

from sensord.daemon import settings

CONFIG = Path(__file__).resolve().parent.parent / "config" / "sensord.toml"


def test_documented_file_equals_embedded_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert settings.load(CONFIG) == settings.load()
    # Every key the code knows is documented in the file, and no other.
    text = CONFIG.read_text()
    defaults = settings.Settings()
    for section in ("server", "auth", "store", "images", "log"):
        assert f"[{section}]" in text
        for key in vars(getattr(defaults, section)):
            assert f"\n{key} = " in text or f"\n[{section}.{key}]\n" in text, f"{section}.{key} undocumented"


def test_state_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert settings.load().state_dir == tmp_path / "state"
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/managed:{tmp_path}/other")
    assert settings.load().state_dir == tmp_path / "managed"


def test_overrides_beat_the_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[server]\nhost = "0.0.0.0"\nport = 1234\n[store]\nstate_dir = "/var/x"\n')
    loaded = settings.load(path, overrides={"server.port": 4321, "server.host": None,
                                            "store.state_dir": str(tmp_path / "y")})
    assert (loaded.server.host, loaded.server.port) == ("0.0.0.0", 4321)
    assert loaded.state_dir == tmp_path / "y"


@pytest.mark.parametrize("text,words", [
    ("[server]\nprot = 1\n", ["server.prot"]),
    ("[sever]\nport = 1\n", ["[sever]"]),
    ("[server]\nport = \"43809\"\n", ["server.port", "int"]),
    ("[server]\nport = true\n", ["server.port"]),
    ("[server]\nport = 70000\n", ["server.port", "65535"]),
    ("[images]\npng_compression = 10\n", ["images.png_compression"]),
    ("[log]\nlevel = \"LOUD\"\n", ["log.level"]),
    ("[log.loggers]\napscheduler = \"LOUD\"\n", ["log.loggers.apscheduler"]),
    ("[server]\nshutdown_seconds = 0\n", ["server.shutdown_seconds"]),
    ("[auth.users]\nbob = \"plaintext\"\n", ["auth.users.bob", "hash-password"]),
    ("[auth.roles]\nbob = \"admin\"\n", ["auth.roles.bob", "operator"]),
    ("[auth]\nlockout_seconds = 60\nlockout_max_seconds = 30\n", ["auth.lockout_max_seconds"]),
    ("[auth]\nmax_failures = 0\n", ["auth.max_failures"]),
    ("[server\n", ["not valid TOML"]),
])
def test_bad_files_are_refused_naming_the_key(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(settings.SettingsError) as err:
        settings.load(path)
    for word in words:
        assert word in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(settings.SettingsError, match="cannot read config"):
        settings.load(tmp_path / "absent.toml")
