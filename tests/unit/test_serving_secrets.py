"""The API key comes from the environment or a file (a mounted secret), never the command line, and
a misconfiguration fails closed with a message that names the file, never the key."""

import pytest
from pydantic import ValidationError

from serving.settings import ServingSettings


def test_key_from_a_file_without_its_newline(tmp_path, monkeypatch):
    path = tmp_path / "key"
    path.write_text("file-key-Gh72xQ\n")
    monkeypatch.setenv("PVERISK_SERVE_API_KEY_FILE", str(path))
    s = ServingSettings()
    assert s.api_key.get_secret_value() == "file-key-Gh72xQ"
    assert "file-key-Gh72xQ" not in repr(s) and "file-key-Gh72xQ" not in str(s.model_dump())


def test_key_and_key_file_together_is_an_error(tmp_path, monkeypatch):
    path = tmp_path / "key"
    path.write_text("file-key-Gh72xQ")
    monkeypatch.setenv("PVERISK_SERVE_API_KEY_FILE", str(path))
    monkeypatch.setenv("PVERISK_SERVE_API_KEY", "env-key-Lp03Zs")
    with pytest.raises(ValidationError, match="not both") as exc:
        ServingSettings()
    assert "env-key-Lp03Zs" not in str(exc.value) and "file-key-Gh72xQ" not in str(exc.value)


@pytest.mark.parametrize("content", ["", "  \n"])
def test_empty_key_file_fails_closed(tmp_path, monkeypatch, content):
    path = tmp_path / "key"
    path.write_text(content)
    monkeypatch.setenv("PVERISK_SERVE_API_KEY_FILE", str(path))
    with pytest.raises(ValidationError, match="is empty"):
        ServingSettings()


def test_unreadable_key_file_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PVERISK_SERVE_API_KEY_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValidationError, match="absent: cannot read"):
        ServingSettings()


def test_empty_key_is_not_auth_off(monkeypatch):
    # an empty variable (an unfilled secret) used to turn authentication off silently
    monkeypatch.setenv("PVERISK_SERVE_API_KEY", "")
    with pytest.raises(ValidationError, match="empty"):
        ServingSettings()
