"""Ray's auth token stays private to its owner; the address comes from flag or environment."""

from __future__ import annotations

import stat

import pytest

from qatsweep.ray_session import auth_token_path, cluster_address, secure_auth_token


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_token_is_created_private(home):
    path = secure_auth_token(create=True)
    assert path == home / ".ray" / "auth_token"
    assert _mode(path) == 0o600 and len(path.read_text()) == 64
    assert secure_auth_token(create=True).read_text() == path.read_text()  # kept


def test_a_readable_token_is_tightened(home):
    path = home / ".ray" / "auth_token"
    path.parent.mkdir()
    path.write_text("secret")
    path.chmod(0o644)
    assert secure_auth_token(create=False) == path
    assert _mode(path) == 0o600 and path.read_text() == "secret"


def test_nothing_is_created_when_joining(home):
    assert secure_auth_token(create=False) is None
    assert not (home / ".ray").exists()


def test_token_from_the_environment_or_auth_off_needs_no_file(home, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "abc")
    assert auth_token_path() is None and secure_auth_token(create=True) is None
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert secure_auth_token(create=True) is None
    assert not (home / ".ray").exists()


def test_custom_token_path(home, monkeypatch):
    custom = home / "tokens" / "ray"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(custom))
    assert secure_auth_token(create=True) == custom and _mode(custom) == 0o600


def test_address_comes_from_the_flag_then_the_environment(home, monkeypatch):
    assert cluster_address(None) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert cluster_address(None) == "10.0.0.1:6379"
    assert cluster_address("127.0.0.1:7000") == "127.0.0.1:7000"
