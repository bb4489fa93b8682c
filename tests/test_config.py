"""The shops config: the shipped file is valid, and every kind of mistake names file, shop and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from starmamut.config import DEFAULT_CONFIG_PATH, ConfigError, load_settings

VALID = {
    "version": 1,
    "mamut": {"conn_id": "mamut_default", "vat_codes": {25: 1, 12: 2}},
    "shops": {
        "alpha": {"name": "Alpha", "flow": "ecom", "starweb_conn_id": "starweb_alpha"},
        "beta": {
            "name": "Beta",
            "flow": "combo",
            "starweb_conn_id": "starweb_beta",
            "schedules": {"products_to_mamut": "*/30 * * * *"},
        },
    },
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "shops.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_shipped_config_is_valid() -> None:
    settings = load_settings(DEFAULT_CONFIG_PATH)
    assert [shop.id for shop in settings.shops] == ["demo"]
    assert settings.shop("demo").flow == "ecom"


def test_shops_keyed_by_id_with_defaults_and_schedules(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, VALID))
    alpha, beta = settings.shops
    assert (alpha.id, alpha.request_budget_per_minute, alpha.pool) == ("alpha", 1000, "starweb_alpha")
    assert alpha.schedule_for("products_to_mamut") == "@hourly"
    assert beta.schedule_for("products_to_mamut") == "*/30 * * * *"
    assert settings.mamut.vat_codes == {25.0: 1, 12.0: 2}
    assert alpha.prices_to_starweb.pricelists[0].allow_inactive is False, "an inactive price list is refused"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["shops"]["beta"].update(flow="shopify"), "shop 'beta': field 'flow'"),
        (lambda d: d["shops"]["alpha"].pop("starweb_conn_id"), "shop 'alpha': field 'starweb_conn_id'"),
        (
            lambda d: d["shops"]["alpha"].update(request_budget_per_minute=0),
            "shop 'alpha': field 'request_budget_per_minute'",
        ),
        (
            lambda d: d["shops"]["alpha"].update(schedules={"prices_to_the_moon": "@daily"}),
            "shop 'alpha': field 'schedules'",
        ),
        (
            lambda d: d["shops"]["beta"].update(products_to_mamut={"main_sku_template": "MAIN"}),
            "shop 'beta': field 'products_to_mamut.main_sku_template'",
        ),
        (
            lambda d: d["shops"]["beta"].update(
                prices_to_starweb={
                    "pricelists": [{"starweb": 2, "mamut": "Återförsäljare", "allow_inactive": "sometimes"}]
                }
            ),
            "shop 'beta': field 'prices_to_starweb.pricelists.0.allow_inactive'",
        ),
        (lambda d: d["shops"]["alpha"].update(colour="blue"), "shop 'alpha': field 'colour'"),
        (
            lambda d: d["shops"].update({"Bad Id": {"name": "x", "flow": "ecom", "starweb_conn_id": "c"}}),
            "shop 'Bad Id': field 'id'",
        ),
        (lambda d: d["mamut"].update(vat_codes={}), "field 'mamut.vat_codes'"),
        (lambda d: d["mamut"].update(timezone="Europe/Stockhlm"), "field 'mamut.timezone'"),
    ],
)
def test_errors_name_file_shop_and_field(tmp_path: Path, change, expected: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(VALID))
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("shops: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken)


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("*/5 * * *", "has 4 field(s); it needs 5"),
        ("61 * * * *", "invalid cron expression '61 * * * *'"),
        ("0 25 * * *", "invalid cron expression"),
        ("0 0 * * * *", "has 6 field(s)"),
        ("every hour", "has 2 field(s)"),
        ("@hourli", "unknown schedule preset '@hourli'"),
        ("0 0 30 2 *", "never matches a date"),
    ],
)
def test_bad_schedules_name_file_shop_and_job(tmp_path: Path, schedule: str, reason: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(VALID))
    data["shops"]["beta"]["schedules"] = {"products_to_mamut": "@daily", "orders_to_mamut": schedule}
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: shop 'beta': field 'schedules.orders_to_mamut': ")
    assert reason in message
    assert len(message.splitlines()) == 1, message


@pytest.mark.parametrize(
    "schedule", ["@hourly", "@daily", "@once", "@continuous", "*/5 * * * *", "0 6-22 * * 1-5", " 15 3 * * sun ", None]
)
def test_good_schedules_pass(tmp_path: Path, schedule: str | None) -> None:
    data = yaml.safe_load(yaml.safe_dump(VALID))
    data["shops"]["alpha"]["schedules"] = {"orders_to_mamut": schedule}
    shop = load_settings(write(tmp_path, data)).shop("alpha")
    assert shop.schedule_for("orders_to_mamut") == (schedule.strip() if schedule else None)


def test_load_by_shop_keeps_the_good_shops_and_names_the_bad(tmp_path: Path) -> None:
    from starmamut.config import load_settings_by_shop

    data = yaml.safe_load(yaml.safe_dump(VALID))
    data["shops"]["beta"]["schedules"] = {"products_to_mamut": "*/5 * * *"}
    path = write(tmp_path, data)
    settings, errors = load_settings_by_shop(path)
    assert [shop.id for shop in settings.shops] == ["alpha"]
    assert list(errors) == ["beta"]
    assert errors["beta"].startswith(f"{path}: shop 'beta': field 'schedules.products_to_mamut': ")
    data["mamut"]["vat_codes"] = {}
    with pytest.raises(ConfigError, match="field 'mamut.vat_codes'"):
        load_settings_by_shop(write(tmp_path, data))


def test_a_new_shop_is_in_shadow_mode_and_the_demo_shop_is_live(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, VALID))
    assert [shop.live for shop in settings.shops] == [False, False]  # added without `live`: shadow mode
    assert load_settings(DEFAULT_CONFIG_PATH).shop("demo").live is True


def test_alerts_are_validated_and_default_to_store_only(tmp_path: Path) -> None:
    alpha = load_settings(write(tmp_path, VALID)).shop("alpha").alerts
    assert (alpha.email, alpha.channels, alpha.daily_report) == ([], [], "0 6 * * *")
    shops = {**VALID["shops"], "alpha": {**VALID["shops"]["alpha"], "alerts": {"email": ["drift@example.se"]}}}
    alpha = load_settings(write(tmp_path, {**VALID, "shops": shops})).shop("alpha").alerts
    assert (alpha.channels, alpha.smtp_conn_id, alpha.on_failure, alpha.on_quarantine_growth) == (
        ["email"],
        "smtp_default",
        True,
        True,
    )


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ({"email": ["not-an-address"]}, "field 'alerts.email.0': String should match pattern"),
        ({"daily_report": "every morning"}, "field 'alerts.daily_report': Value error, cron expression"),
        ({"emails": ["a@b.se"]}, "field 'alerts.emails': Extra inputs are not permitted"),
    ],
)
def test_a_bad_alerts_section_names_shop_and_field(tmp_path: Path, alerts: dict, message: str) -> None:
    shops = {**VALID["shops"], "alpha": {**VALID["shops"]["alpha"], "alerts": alerts}}
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, {**VALID, "shops": shops}))
    assert f"shop 'alpha': {message}" in str(raised.value)


@pytest.mark.parametrize(
    ("field", "package"),
    [
        ("slack_webhook_conn_id", "apache-airflow-providers-slack"),
        ("teams_conn_id", "apache-airflow-providers-apprise"),
    ],
)
def test_slack_or_teams_without_their_provider_is_a_clear_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, package: str
) -> None:
    import importlib.util

    from starmamut.config import OPTIONAL_PROVIDERS

    real_find_spec = importlib.util.find_spec
    missing = OPTIONAL_PROVIDERS[field][0]
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == missing else real_find_spec(name, *args)
    )
    shops = {**VALID["shops"], "alpha": {**VALID["shops"]["alpha"], "alerts": {field: "chat_ops"}}}
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, {**VALID, "shops": shops}))
    assert (
        f"shop 'alpha': field 'alerts': Value error, {field} is set but the {package} provider is not installed: "
        f"pip install {package}"
    ) in str(raised.value)
