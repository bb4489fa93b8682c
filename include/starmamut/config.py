"""Shops, flows, schedules and mappings from versioned YAML, validated when DAGs are parsed.

A bad config must stop the DAG file with one message that names the file, the shop and the field, so the
consultant who edited it sees what to fix in the Airflow UI's import errors. Secrets never live here: the
config only names Airflow Connection ids.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from starmamut.jobs.registry import JOBS

Flow = Literal["ecom", "erp", "combo"]
SHOP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,29}$"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "shops.yaml"


class ConfigError(ValueError):
    """The shops config cannot be used; the message names the file, the shop and the field."""


SCHEDULE_PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
"""The presets Airflow 3 accepts as a DAG's schedule string (airflow.utils.dates.cron_presets plus the two specials)."""


def check_schedule(value: str) -> str:
    """A cron expression of exactly five fields (as Airflow requires) or one of :data:`SCHEDULE_PRESETS`.

    Checked here, when the config loads, so a typo names the shop and job instead of failing Airflow's parse
    with a message that names neither.
    """
    from croniter import CroniterBadDateError, CroniterError, croniter

    text = value.strip()
    if text.startswith("@"):
        if text not in SCHEDULE_PRESETS:
            raise ValueError(f"unknown schedule preset {value!r}; presets: {', '.join(SCHEDULE_PRESETS)}")
        return text
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {value!r} has {len(fields)} field(s); it needs 5 "
            "(minute hour day-of-month month day-of-week) or a preset such as '@hourly'"
        )
    try:
        croniter(text).get_next()
    except CroniterBadDateError:
        raise ValueError(f"cron expression {value!r} never matches a date") from None
    except (CroniterError, ValueError) as exc:
        raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
    return text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProductsToMamutSettings(_Strict):
    """How Starweb products become Mamut articles."""

    main_sku_template: str = Field(
        default="SW-{product_id}",
        description="Article number of the Mamut main article of a product with several variants.",
    )
    overlap_minutes: Annotated[int, Field(ge=0, le=1440)] = 10
    quarantine_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5

    @field_validator("main_sku_template")
    @classmethod
    def _template_names_product(cls, value: str) -> str:
        if "{product_id}" not in value:
            raise ValueError("must contain {product_id} so every main article number is unique")
        return value


StatusRef = int | str
"""A Starweb order status by numeric id or by ``idCode`` (created, picking, completed, canceled)."""


class OrdersToMamutSettings(_Strict):
    """Which web orders go to Mamut, as what, and how customers are matched."""

    document: Literal["order", "invoice"] = "order"
    eligible_statuses: list[StatusRef] = Field(default_factory=lambda: ["created", "picking"], min_length=1)
    include_unpaid: bool = Field(default=False, description="also transfer orders whose payment is not complete")
    overlap_minutes: Annotated[int, Field(ge=0, le=1440)] = 30
    max_age_days: Annotated[int, Field(ge=1, le=365)] = 30
    customer_match: list[Literal["external_id", "email", "org_no"]] = Field(
        default_factory=lambda: ["external_id", "email", "org_no"], min_length=1
    )
    guest_customer_no: int | None = Field(default=None, description="Mamut customer for guests no key matches")
    update_customer_from_order: bool = Field(
        default=False, description="write each order's buyer, addresses included, over the matched Mamut customer"
    )
    shipping_sku: str = "FRAKT"
    payment_fee_sku: str = "AVGIFT"
    unknown_sku: Literal["free_text", "quarantine"] = "free_text"
    write_back: bool = True
    status_after_transfer: StatusRef | None = None
    total_tolerance_per_line: Annotated[float, Field(ge=0, le=1)] = 0.01
    quarantine_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5


class PricelistMapping(_Strict):
    """One Starweb price list fed from Mamut: the base sales price or a Mamut price list (by name)."""

    starweb: Annotated[int, Field(ge=1)]
    mamut: str = Field(description="'base' for the article's sales price, else a Mamut price list name")
    allow_inactive: bool = Field(default=False, description="write even while the Starweb price list is inactive")


class PricesToStarwebSettings(_Strict):
    pricelists: list[PricelistMapping] = Field(default_factory=lambda: [PricelistMapping(starweb=1, mamut="base")])
    rounding: Literal["none", "cents", "whole"] = "cents"
    quarantine_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5


class StockLocationMapping(_Strict):
    """Which Mamut warehouses add up to one Starweb stock location ('variant' = the variant's own stock)."""

    starweb: int | Literal["variant"]
    warehouses: list[int] = Field(min_length=1)


class StockToStarwebSettings(_Strict):
    locations: list[StockLocationMapping] = Field(
        default_factory=lambda: [StockLocationMapping(starweb="variant", warehouses=[1])]
    )
    subtract_reserved: bool = True
    negative: Literal["clamp", "pass"] = "clamp"
    in_stock_status: str = "inStock"
    out_of_stock_status: str = "outOfStock"
    backorder_status: str | None = Field(default=None, description="idCode used when stock <= 0 and buyable")
    quarantine_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5


class StatusTransition(_Strict):
    """What to tell Starweb when a Mamut order reaches a state: the status and the switches of that PATCH."""

    status: StatusRef
    send_email: bool = False
    attach_tracking: bool = False
    process_payment: bool = False
    require_tracking: bool = Field(default=False, description="do not report until Mamut has a tracking number")


class OrderStatusToStarwebSettings(_Strict):
    """Mamut order states (derived through the schema map) mapped to Starweb statuses, per shop."""

    transitions: dict[str, StatusTransition] = Field(
        default_factory=lambda: {
            "delivered": StatusTransition(
                status="completed", send_email=True, attach_tracking=True, process_payment=True
            ),
            "cancelled": StatusTransition(status="canceled", send_email=True, process_payment=True),
        }
    )
    allow_backwards: bool = False
    final_statuses: list[StatusRef] = Field(default_factory=lambda: ["completed", "canceled"])
    overlap_minutes: Annotated[int, Field(ge=0, le=1440)] = 10
    quarantine_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5


MamutOwned = Literal["mamut", "mamut_if_set", "shop"]
"""``mamut``: Mamut's value is written, an empty one clears the shop's; ``mamut_if_set``: Mamut's value is written
only when Mamut has one, so an empty Mamut value never clears a shop value; ``shop``: never written."""


class ProductFieldOwners(_Strict):
    """Which side owns each field of a product the shop already has. A product the job creates gets every value
    Mamut has; on an existing one a field the shop owns is never written."""

    name: Literal["mamut", "shop"] = Field(default="mamut", description="product name in the shop's language")
    descriptions: Literal["shop"] = Field(default="shop", description="descriptions: Mamut holds none, never written")
    ean: MamutOwned = Field(default="mamut_if_set", description="each variant's EAN")
    weight: MamutOwned = Field(default="mamut_if_set", description="each variant's weight (a Mamut 0 is empty)")
    visibility: Literal["mamut", "shop"] = Field(
        default="mamut", description="mamut: hidden while all its articles are inactive, shown when one is again"
    )
    sku_case: Literal["mamut", "shop"] = Field(
        default="shop", description="spelling of a SKU the shop holds in other letter case (matched regardless)"
    )
    variant_active: Literal["mamut", "shop"] = Field(
        default="mamut", description="each variant's isActive (Mamut's inactive articles, variants gone from Mamut)"
    )


class ProductsToStarwebSettings(_Strict):
    new_product_visibility: Literal["hidden", "visible"] = "hidden"
    field_owners: ProductFieldOwners = Field(
        default_factory=ProductFieldOwners, description="which side owns each field of a product the shop has"
    )
    overlap_minutes: Annotated[int, Field(ge=0, le=1440)] = 10
    quarantine_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5


EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

OPTIONAL_PROVIDERS = {
    "slack_webhook_conn_id": ("airflow.providers.slack.notifications.slack_webhook", "apache-airflow-providers-slack"),
    "teams_conn_id": ("airflow.providers.apprise.notifications.apprise", "apache-airflow-providers-apprise"),
}
"""Alert channels that need an Airflow provider this project does not install: setting field -> (module, package)."""


class AlertSettings(_Strict):
    """Who hears about this shop: a failed task, the open quarantine growing, and the daily report, all sent
    through Airflow notifiers (SMTP from the smtp provider Airflow ships with; Slack and Teams need theirs).
    The Connections hold the server, webhook and secrets; this section only names them."""

    email: list[Annotated[str, Field(pattern=EMAIL_PATTERN)]] = Field(
        default_factory=list, description="recipients of the alert and report mails; empty = no mail"
    )
    smtp_conn_id: str = Field(default="smtp_default", description="Airflow SMTP Connection the mails go through")
    from_email: str | None = Field(
        default=None, description="sender address; unset = the SMTP Connection's 'from_email' extra"
    )
    slack_webhook_conn_id: str | None = Field(
        default=None, description="Slack incoming-webhook Connection (needs apache-airflow-providers-slack)"
    )
    teams_conn_id: str | None = Field(
        default=None,
        description="Apprise Connection whose config is the Teams webhook, msteams://... "
        "(needs apache-airflow-providers-apprise)",
    )
    on_failure: bool = Field(default=True, description="alert when a task of this shop fails (after its retries)")
    on_quarantine_growth: bool = Field(default=True, description="alert when the shop's open quarantine grows")
    daily_report: Annotated[str, AfterValidator(check_schedule)] | None = Field(
        default="0 6 * * *", description="when the daily report DAG runs (cron, UTC); null = manual only"
    )

    @model_validator(mode="after")
    def _providers_installed(self) -> AlertSettings:
        from importlib.util import find_spec

        for name, (module, package) in OPTIONAL_PROVIDERS.items():
            if getattr(self, name) is None:
                continue
            try:
                found = find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                raise ValueError(f"{name} is set but the {package} provider is not installed: pip install {package}")
        return self

    @property
    def channels(self) -> list[str]:
        """The channels alerts go to, e.g. ['email', 'slack']; empty when the shop has none."""
        return [
            name
            for name, on in (
                ("email", bool(self.email)),
                ("slack", self.slack_webhook_conn_id is not None),
                ("teams", self.teams_conn_id is not None),
            )
            if on
        ]


TransformEntity = Literal["products", "prices", "stock", "orders", "customers"]
TransformPoint = Literal["after_mapping", "before_load"]
DOTTED_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"


class ShopConfig(_Strict):
    """One Starweb shop: its flow, credentials (by Connection id), budget and per-job settings."""

    id: Annotated[str, Field(pattern=SHOP_ID_PATTERN)]
    name: str
    flow: Flow
    starweb_conn_id: str
    live: bool = Field(
        default=False,
        description="false (shadow mode): every run, scheduled or manual, is a dry run that records what it "
        "would write; set true to arm the shop",
    )
    language: Annotated[str, Field(min_length=2, max_length=2)] = "sv"
    request_budget_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 1000
    max_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    pool_slots: Annotated[int, Field(ge=1, le=64)] = 2
    schedules: dict[str, Annotated[str, AfterValidator(check_schedule)] | None] = Field(default_factory=dict)
    products_to_mamut: ProductsToMamutSettings = ProductsToMamutSettings()
    orders_to_mamut: OrdersToMamutSettings = OrdersToMamutSettings()
    products_to_starweb: ProductsToStarwebSettings = ProductsToStarwebSettings()
    prices_to_starweb: PricesToStarwebSettings = PricesToStarwebSettings()
    stock_to_starweb: StockToStarwebSettings = StockToStarwebSettings()
    order_status_to_starweb: OrderStatusToStarwebSettings = OrderStatusToStarwebSettings()
    extra_jobs: list[str] = Field(default_factory=list, description="optional jobs this shop turns on")
    alerts: AlertSettings = Field(default_factory=AlertSettings, description="alert and daily report channels")
    transforms: dict[TransformEntity, dict[TransformPoint, list[Annotated[str, Field(pattern=DOTTED_PATH)]]]] = Field(
        default_factory=dict,
        description="per entity and hook point, dotted paths of callables in plugins/ applied in order",
    )

    @field_validator("schedules")
    @classmethod
    def _schedules_name_known_jobs(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        unknown = sorted(set(value) - set(JOBS))
        if unknown:
            raise ValueError(f"unknown job(s) {unknown}; known jobs: {sorted(JOBS)}")
        return value

    @model_validator(mode="after")
    def _extra_jobs_are_optional_for_the_flow(self) -> ShopConfig:
        for job in self.extra_jobs:
            spec = JOBS.get(job)
            if spec is None or self.flow not in spec.optional_flows:
                optional = sorted(name for name, spec in JOBS.items() if self.flow in spec.optional_flows)
                raise ValueError(
                    f"extra_jobs: {job!r} is not an optional job of flow {self.flow!r} (optional: {optional})"
                )
        return self

    def schedule_for(self, job: str) -> str | None:
        """The shop's schedule for a job, else the job's default; None means manual only."""
        return self.schedules.get(job, JOBS[job].default_schedule)

    @property
    def pool(self) -> str:
        """Airflow pool that caps this shop's concurrently running Starweb tasks."""
        return f"starweb_{self.id}"

    @property
    def pacer_key(self) -> str:
        return f"starweb:{self.id}"


class CustomerNumbers(_Strict):
    """Who owns the customer number series: Mamut allocates the next free number in a range, or the number
    is derived from the Starweb customer id (offset + id) so both systems show the same number."""

    owner: Literal["mamut", "starweb"] = "mamut"
    first: Annotated[int, Field(ge=1)] = 10000
    last: Annotated[int, Field(ge=1)] = 49999
    starweb_offset: Annotated[int, Field(ge=0)] = 50000


class ExchangeRate(_Strict):
    """How Mamut states an order's exchange rate (Starweb sends order currency per 1 base unit, 0.0868 EUR/SEK)."""

    direction: Literal["base_per_foreign", "foreign_per_base"] = Field(
        default="base_per_foreign",
        description="base_per_foreign: 11.52 (SEK per EUR); foreign_per_base: 0.0868 (EUR per SEK, as Starweb)",
    )
    unit: Literal[1, 100] = Field(default=1, description="the rate is per 1 or per 100 units (1152.07 SEK per 100 EUR)")


class MamutImportSettings(_Strict):
    """How files reach Mamut Import/Export when ``write_mode: import`` (docs/reference/mamut.md section 2)."""

    transport: Literal["folder", "ssh"] = Field(
        default="folder",
        description="folder: files go into the inbox, a scheduled task on the Mamut server imports them; "
        "ssh: upload by SFTP and run the import over SSH",
    )
    inbox: str = Field(
        default="/srv/mamut-import/inbox",
        description="folder: the share as the workers see it; ssh: the inbox on the Mamut server (C:/Starmamut/inbox)",
    )
    ssh_conn_id: str = Field(default="mamut_ssh", description="Airflow SSH Connection to the Mamut server (ssh)")
    program: str = Field(
        default="C:/Program Files (x86)/Mamut/Mamut ImportExport.exe",
        description="ssh: the Import/Export program on the Mamut server",
    )
    company: Annotated[str, Field(pattern=r"^[0-9]{1,6}$")] = Field(
        default="001", description="Mamut company (database) number the files go into"
    )
    compare_key: Literal[1, 2] = Field(
        default=1, description="how Mamut matches articles and customers: 1 number, 2 name"
    )
    user_id: Annotated[int, Field(ge=1)] = Field(default=1, description="Mamut user the import runs as")
    warehouse: Annotated[int, Field(ge=1)] = Field(default=1, description="warehouse number on order lines")
    confirm_timeout_minutes: Annotated[int, Field(ge=1, le=10080)] = Field(
        default=60,
        description="an issued file not seen in Mamut (by SQL) after this long is quarantined as a problem",
    )
    articles_per_file: Annotated[int, Field(ge=1, le=5000)] = Field(
        default=200, description="products per GBAPX10 file (files are chunked by product id)"
    )


class MamutSettings(_Strict):
    """The one Mamut company database all shops share."""

    conn_id: str = "mamut_default"
    write_mode: Literal["sql", "import"] = Field(
        default="sql",
        description="sql: orders and articles are written as rows (mock, or installs that choose it); "
        "import: as Mamut Import/Export XML files, confirmed by reading SQL (recommended for production)",
    )
    import_: MamutImportSettings = Field(
        default_factory=MamutImportSettings, alias="import", description="the Import/Export files (write_mode: import)"
    )
    customer_numbers: CustomerNumbers = CustomerNumbers()
    exchange_rate: ExchangeRate = ExchangeRate()
    schema_map: str | None = Field(default=None, description="YAML overriding table/column names")
    timezone: str = Field(
        default="Europe/Stockholm",
        description="the Mamut server's time zone: Mamut stamps EDITDATE in local time (IANA name)",
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Stockholm") from None
        return value

    vat_codes: dict[float, int] = Field(description="VAT rate in percent -> Mamut VATCODE")

    @field_validator("vat_codes")
    @classmethod
    def _vat_codes_not_empty(cls, value: dict[float, int]) -> dict[float, int]:
        if not value:
            raise ValueError("must map at least one VAT rate to a Mamut VAT code")
        return value


class LeaseSettings(_Strict):
    """The load lease every load step holds on each shop × entity it writes (one loader at a time)."""

    ttl_seconds: Annotated[float, Field(ge=10, le=3600)] = Field(
        default=120,
        description="how long a lease outlives its last renewal (renewed every third of it): a loader stalled "
        "this long loses its lease to the next one",
    )
    wait_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=60, description="how long a second loader waits for a held lease before its task fails and retries"
    )


class Settings(_Strict):
    """The whole config file."""

    version: Literal[1]
    staging_conn_id: str | None = Field(
        default=None, description="Connection of the staging database; unset = SQLite beside AIRFLOW_HOME"
    )
    request_pacer_url: str | None = Field(
        default=None, description="file:///dir or redis://host:port/db; unset = a directory in AIRFLOW_HOME"
    )
    mamut: MamutSettings
    lease: LeaseSettings = LeaseSettings()
    shops: list[ShopConfig]

    @model_validator(mode="before")
    @classmethod
    def _shops_keyed_by_id(cls, data: Any) -> Any:
        """Shops are written as a mapping id -> settings; the id is the key, not a repeated field."""
        if isinstance(data, dict) and isinstance(data.get("shops"), dict):
            data = dict(data)
            data["shops"] = [
                {"id": shop_id, **(body or {})} if isinstance(body, dict) or body is None else body
                for shop_id, body in data["shops"].items()
            ]
        return data

    def shop(self, shop_id: str) -> ShopConfig:
        for shop in self.shops:
            if shop.id == shop_id:
                return shop
        raise KeyError(f"no shop {shop_id!r} in the config")


def config_path() -> Path:
    """The config file in force: $STARMAMUT_CONFIG or the project's config/shops.yaml."""
    return Path(os.environ.get("STARMAMUT_CONFIG") or DEFAULT_CONFIG_PATH)


def load_settings(path: Path | None = None) -> Settings:
    """Read and validate the config; raise ConfigError naming file, shop and field on any problem."""
    path = path or config_path()
    raw = _read_raw(path)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(path, raw, exc)) from None


def load_settings_by_shop(path: Path | None = None) -> tuple[Settings, dict[str, str]]:
    """The config with its valid shops, and the errors of each invalid shop (id -> message lines).

    For the DAG file: one shop's mistake (a bad cron string, a missing field) must not hide the other shops'
    DAGs. A problem outside the shops' own sections (unreadable file, ``mamut``, ``version``) still raises
    ConfigError, as nothing can be built then.
    """
    path = path or config_path()
    raw = _read_raw(path)
    try:
        return Settings.model_validate(raw), {}
    except ValidationError as exc:
        shops = raw.get("shops")
        shop_ids = list(shops) if isinstance(shops, dict) else []
        errors: dict[str, list[str]] = {}
        for error, line in zip(exc.errors(), _describe(path, raw, exc).splitlines(), strict=True):
            location = error["loc"]
            if not (
                shop_ids
                and len(location) > 1
                and location[0] == "shops"
                and isinstance(location[1], int)
                and location[1] < len(shop_ids)
            ):
                raise ConfigError(_describe(path, raw, exc)) from None
            errors.setdefault(shop_ids[location[1]], []).append(line)
        good = {shop_id: body for shop_id, body in shops.items() if shop_id not in errors}
        try:
            settings = Settings.model_validate({**raw, "shops": good})
        except ValidationError:
            raise ConfigError(_describe(path, raw, exc)) from None
        return settings, {shop_id: "\n".join(lines) for shop_id, lines in errors.items()}


def _read_raw(path: Path) -> Mapping[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def _describe(path: Path, raw: Mapping[str, Any], exc: ValidationError) -> str:
    """One line per problem: '<file>: shop 'x': field 'a.b': message'."""
    shop_ids = list(raw.get("shops") or []) if isinstance(raw.get("shops"), dict) else []
    lines = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        where = ""
        if location[:1] == ["shops"] and len(location) > 1 and location[1].isdigit():
            index = int(location[1])
            shop = shop_ids[index] if index < len(shop_ids) else f"#{index + 1}"
            where = f" shop {shop!r}:"
            location = location[2:]
        field = ".".join(location) or "(top level)"
        message = re.sub(r"\s+", " ", error["msg"])
        lines.append(f"{path}:{where} field {field!r}: {message}")
    return "\n".join(lines)
