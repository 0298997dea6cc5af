"""Settings in-process: secrets stay out of repr, cron settings normalise (the start-up checks
that run a process are in tests/integration/test_settings.py).
"""


def test_secrets_do_not_appear_in_repr():
    from kiosk.settings import Settings

    settings = Settings(
        **{  # type: ignore[arg-type]
            "DATABASE_URL": "postgresql://h/d",
            "admin_token": "a" * 20,
            "MP_ACCESS_TOKEN": "APP_USR-very-secret",
            "MP_WEBHOOK_SECRET": "hook-secret",
        }
    )
    text = repr(settings) + str(settings.model_dump())
    assert "APP_USR-very-secret" not in text and "hook-secret" not in text and "a" * 20 not in text


def test_secrets_never_in_repr():
    from kiosk.settings import Settings

    settings = Settings(
        **{  # type: ignore[arg-type]
            "DATABASE_URL": "postgresql://h/d",
            "admin_token": "a" * 20,
            "MP_ACCESS_TOKEN": "t",
            "MP_WEBHOOK_SECRET": "s",
            "smtp_password": "smtp-very-secret",
            "notify_url": "https://hooks.example.com/x",
            "notify_secret": "notify-very-secret",
        }
    )
    text = repr(settings) + str(settings.model_dump())
    assert "smtp-very-secret" not in text and "notify-very-secret" not in text
    assert settings.payment_expiration == "PT5M" and settings.order_ttl == 1800


def test_cron_defaults_and_overrides():
    from kiosk.settings import Settings

    base = {
        "DATABASE_URL": "postgresql://h/d",
        "admin_token": "a" * 20,
        "MP_ACCESS_TOKEN": "t",
        "MP_WEBHOOK_SECRET": "s",
    }
    defaults = Settings(**base)  # type: ignore[arg-type]
    assert defaults.cleanup_payment_intents_cron == "*/2 * * * *"
    assert defaults.expire_orders_cron == "*/10 * * * *"
    custom = Settings(
        **base,
        cleanup_payment_intents_cron=" *  * * * * */2",  # type: ignore[arg-type]
        expire_orders_cron="@hourly",
    )
    assert custom.cleanup_payment_intents_cron == "* * * * * */2"
    assert custom.expire_orders_cron == "@hourly"
