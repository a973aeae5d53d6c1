from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings
from core.exceptions import ConfigError


class TestLoadSettings:
    def test_defaults_are_the_embedded_ones(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.delenv("REDIS_URL", raising=False)
        settings = load_settings(data_dir=Path("somewhere"))
        assert settings.database_url == "sqlite+aiosqlite:///somewhere/cival.db"
        assert not settings.redis.enabled
        assert settings.auth_enabled is False
        assert settings.market_data.market_data_source == "simulated"

    def test_postgres_url_gets_the_async_driver(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", "postgresql://u@db:5432/cival")
        assert load_settings().database_url == "postgresql+asyncpg://u@db:5432/cival"

    @pytest.mark.parametrize(
        ("variable", "value", "reason"),
        [
            ("DATABASE_URL", "mysql://x", "invalid setting DATABASE_URL: must be a postgresql"),
            ("REDIS_URL", "http://x", "invalid setting REDIS_URL: must be a redis://"),
            ("PORT", "eighty", "invalid setting PORT:"),
            ("LOG_FORMAT", "xml", "invalid setting LOG_FORMAT:"),
            ("API_PREFIX", "api/v1", "invalid setting API_PREFIX: must start with '/'"),
            ("RATE_LIMIT_DEFAULT", "lots", "invalid setting RATE_LIMIT_DEFAULT:"),
            ("WS_QUEUE_SIZE", "0", "invalid setting WS_QUEUE_SIZE:"),
            ("MARKET_DATA_SOURCE", "nasdaq", "invalid setting MARKET_DATA_SOURCE:"),
            (
                "ANTHROPIC_BASE_URL",
                "api.anthropic.com",
                "invalid setting ANTHROPIC_BASE_URL: must be an http:// or https:// URL",
            ),
            (
                "OPENAI_COMPATIBLE_BASE_URL",
                "localhost:11434/v1",
                "invalid setting OPENAI_COMPATIBLE_BASE_URL: must be an http:// or https:// URL",
            ),
            (
                "OPENAI_BASE_URL",
                "ftp://proxy.example",
                "invalid setting OPENAI_BASE_URL: must be an http:// or https:// URL",
            ),
        ],
    )
    def test_a_bad_value_names_the_variable_in_one_line(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
    ) -> None:
        monkeypatch.setenv(variable, value)
        with pytest.raises(ConfigError) as caught:
            load_settings()
        message = str(caught.value)
        assert message.startswith(reason)
        assert "\n" not in message

    def test_each_provider_reads_its_own_url_and_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
        monkeypatch.setenv("OPENAI_BASE_URL", "https://gateway.example/openai/v1")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://gateway.example/anthropic")
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", "http://127.0.0.1:11434/v1")
        monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "ollama")

        llm = load_settings().llm

        assert llm.openai_base_url == "https://gateway.example/openai/v1"
        assert llm.anthropic_base_url == "https://gateway.example/anthropic"
        assert llm.openai_compatible_base_url == "http://127.0.0.1:11434/v1"
        assert llm.openai_compatible_api_key is not None
        assert llm.openai_compatible_api_key.get_secret_value() == "ollama"

    def test_blank_urls_mean_the_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # As a copied .env.example leaves them.
        for variable in (
            "OPENAI_BASE_URL",
            "ANTHROPIC_BASE_URL",
            "OPENROUTER_BASE_URL",
            "OPENAI_COMPATIBLE_BASE_URL",
        ):
            monkeypatch.setenv(variable, " ")

        llm = load_settings().llm

        assert llm.openai_base_url is None
        assert llm.anthropic_base_url == "https://api.anthropic.com"
        assert llm.openrouter_base_url == "https://openrouter.ai/api/v1"
        assert llm.openai_compatible_base_url is None

    def test_cors_origins_read_as_a_comma_list(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
        assert load_settings().cors_origins == ["https://a.example", "https://b.example"]

    def test_production_refuses_the_embedded_database(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("ENVIRONMENT", "production")
        monkeypatch.delenv("DATABASE_URL", raising=False)
        with pytest.raises(
            ConfigError, match=r"^invalid settings: DATABASE_URL is required in production$"
        ):
            load_settings()

    def test_secret_key_is_generated_once_and_kept(self, tmp_path: Path) -> None:
        settings = load_settings(data_dir=tmp_path)
        first = settings.resolved_secret_key().get_secret_value()
        again = load_settings(data_dir=tmp_path).resolved_secret_key().get_secret_value()
        assert first == again
        assert len(first) >= 48
        assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
