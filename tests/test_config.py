"""Config: found in the documented order, strict about typos, secrets from the environment and never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from opstui.config import Config, discover, load_config, render_config
from opstui.config._load import _unwrap
from opstui.errors import ConfigError

ROOT = Path(__file__).parent.parent


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "opstui", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def test_example_config_loads_and_documents_every_option() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert config.general.timezone == "Asia/Almaty"
    text = (ROOT / "config.example.toml").read_text()
    # Every field of every section, nested tables ([[redis.queues]]) included, appears in the example, so the
    # example really is the reference.

    def check_documented(model: type[BaseModel], path: str) -> None:
        for name, info in model.model_fields.items():
            field = info.alias or name  # `for_` is written `for` in TOML
            assert f"{field} =" in text or f"{field}." in text or f"[{path}.{field}]" in text, (
                f"{path}.{field} is not documented in config.example.toml"
            )
            inner = _unwrap(info.annotation)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                check_documented(inner, f"{path}.{field}")

    for section_name, section in Config.model_fields.items():
        assert f"[{section_name}]" in text, section_name
        check_documented(_unwrap(section.annotation), section_name)


def test_no_config_at_all_watches_the_local_host(tmp_path: Path) -> None:
    assert discover(environ={}, cwd=tmp_path) is None
    config = load_config(environ={})
    assert config.path is None and config.host.enabled


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "opstui.toml").write_text("")
    env_file = tmp_path / "from-env.toml"
    env_file.write_text("")
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("")
    assert discover(explicit, environ={"OPSTUI_CONFIG": str(env_file)}, cwd=tmp_path) == explicit
    assert discover(None, environ={"OPSTUI_CONFIG": str(env_file)}, cwd=tmp_path) == env_file
    assert discover(None, environ={}, cwd=tmp_path) == tmp_path / "opstui.toml"
    user = tmp_path / "xdg" / "xdg_config_home" / "opstui" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("")
    assert discover(None, environ={}, cwd=tmp_path / "xdg") == user


def test_a_typo_is_one_line_naming_file_line_key_and_a_suggestion(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[host]\nintervall = "5s"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:5: host.intervall: unknown key 'intervall' (did you mean 'interval'?)"


def test_cli_config_check_fails_with_exit_2_and_one_line(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config("[host]\ntop_procesess = 3\n")
    result = run_cli("config", "check", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"opstui: config error: {path}:5: host.top_procesess: unknown key 'top_procesess' "
        "(did you mean 'top_processes'?)"
    ]
    assert "Traceback" not in result.stderr


def test_cli_config_check_passes_on_the_example() -> None:
    result = run_cli("config", "check", str(ROOT / "config.example.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": ok")


def test_syntax_error_names_the_line(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[host]\ninterval "5s"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:5: TOML syntax error at column 10:")


def test_wrong_type_names_the_key_and_value(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[host]\ntop_processes = "lots"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:5: host.top_processes: Input should be a valid integer")
    assert "(got 'lots')" in str(caught.value)


def test_bad_duration_and_timezone_explain_the_expected_form(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[general]\ntimezone = "Mars/Olympus"\n[host]\ninterval = "5 minutes"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert lines == [
        f"{path}:2: general.timezone: unknown timezone 'Mars/Olympus'; use an IANA name such as 'Europe/Berlin'",
        f"{path}:4: host.interval: '5 minutes' is not a duration; write it like '30s', '5m', '1h30m' or '1d'",
    ]


def test_missing_environment_variable_names_it(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[general]\ninstance = "${OPSTUI_TEST_UNSET_VAR}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == (
        f"{path}:2: general.instance: environment variable OPSTUI_TEST_UNSET_VAR is not "
        "set (write ${OPSTUI_TEST_UNSET_VAR:-default} for a fallback)"
    )


def test_interpolation_defaults_and_escapes(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[general]\ninstance = "${NAME}-${ZONE:-eu}-$$5"\n')
    config = load_config(path, environ={"NAME": "bot"})
    assert config.general.instance == "bot-eu-$5"


def test_bad_config_starts_nothing(write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_config("[host]\nbogus = 1\n")
    result = run_cli("-c", str(path), "daemon")
    assert result.returncode == 2
    assert "unknown key 'bogus'" in result.stderr
    assert not (tmp_path / "state").exists(), "the daemon created state before the config was valid"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[[redis]]\nurl = "redis://:NotTheRealPw123#x@127.0.0.1:6379/0"\n', "redis[0].url"),
        ('[[postgres]]\ndsn = "postgresql://app:NotTheRealPw123#x@127.0.0.1:5432/db"\n', "postgres[0].dsn"),
        ('[daemon.ha]\ndsn = "postgresql://opstui:NotTheRealPw123?x@127.0.0.1:5432/opstui"\n', "daemon.ha.dsn"),
        # Digits before the '#' read as a port: urllib accepts the URL, which would point at the host "app".
        ('[[postgres]]\ndsn = "postgresql://app:4821#NotTheRealPw@127.0.0.1:5432/db"\n', "postgres[0].dsn"),
    ],
)
def test_a_password_with_an_unencoded_hash_is_refused_without_quoting_it(write_config, toml: str, key: str) -> None:  # type: ignore[no-untyped-def]
    path = write_config(toml)
    result = run_cli("-c", str(path), "daemon")
    assert result.returncode == 2
    assert f"opstui: config error: {path}:" in result.stderr
    assert f": {key}: " in result.stderr
    assert "must be percent-encoded (# as %23" in result.stderr
    assert "NotTheRealPw" not in result.stdout + result.stderr
    assert "4821" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_config_show_masks_secrets(write_config) -> None:  # type: ignore[no-untyped-def]
    from opstui.config import Secret, Section

    class WithSecret(Section):
        token: Secret

    from opstui.config._base import iter_secrets
    from opstui.redact import register_secret

    for secret, whole in iter_secrets(WithSecret(token="123456:TEST-secret-token-not-real-AAAAAAAA")):
        register_secret(secret, whole=whole)
    config = load_config(write_config('[general]\ninstance = "bot 123456:TEST-secret-token-not-real-AAAAAAAA"\n'))
    shown = render_config(config)
    assert "TEST-secret-token" not in shown
    assert "123456:***" in shown


def test_a_typo_inside_an_array_of_tables_gets_a_suggestion(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config(
        '[[redis]]\nname = "main"\nurl = "redis://127.0.0.1:6379/0"\n[[redis.queues]]\nname = "q"\nkye = "x"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:9: redis[0].queues[0].kye: unknown key 'kye' (did you mean 'key'?)"


def test_suggestions_use_the_names_written_in_toml(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[alerts.process_down]\nforr = "1m"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).endswith("unknown key 'forr' (did you mean 'for'?)")


def test_a_zero_interval_or_timeout_is_refused(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[host]\ninterval = "0s"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:5: host.interval: Input should be greater than 0 (got '0s')"
