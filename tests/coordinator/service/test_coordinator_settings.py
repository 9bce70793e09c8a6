"""The coordinator's one settings class: no default secrets, no plain HTTP off loopback, TLS in pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from coordinator.service import CoordinatorSettings


@pytest.mark.parametrize("secret", ["changethis", "admin", "x" * 31])
def test_a_default_or_short_bootstrap_token_is_refused(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ValidationError, match="bootstrap_admin_token"):
        CoordinatorSettings(state_dir=tmp_path, bootstrap_admin_token=secret)


def test_plain_http_only_on_loopback_and_tls_files_in_pairs(tmp_path: Path) -> None:
    assert CoordinatorSettings(state_dir=tmp_path, host="::1").base_url(8700) == "http://::1:8700"
    with pytest.raises(ValidationError, match="loopback"):
        CoordinatorSettings(state_dir=tmp_path, host="0.0.0.0")
    with pytest.raises(ValidationError, match="both --tls-cert and --tls-key"):
        CoordinatorSettings(state_dir=tmp_path, tls_cert=tmp_path / "c.pem")
    served = CoordinatorSettings(
        state_dir=tmp_path, host="0.0.0.0", tls_cert=tmp_path / "c", tls_key=tmp_path / "k"
    )
    assert served.tls and served.base_url(8700).startswith("https://")


def test_environment_is_read_and_the_database_url_stays_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOYALFED_COORDINATOR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LOYALFED_COORDINATOR_DATABASE_URL", "postgresql+psycopg://u:hunter2@db/loyalfed")
    settings = CoordinatorSettings()  # type: ignore[call-arg]
    assert settings.store_url().endswith("@db/loyalfed") and "hunter2" not in repr(settings)
    with pytest.raises(ValidationError, match="extra"):
        CoordinatorSettings(state_dir=tmp_path, unknown_setting=1)  # type: ignore[call-arg]
