"""The Starmamut view: a FastAPI app that the plugin (plugins/starmamut_plugin.py) mounts in Airflow's API server
at ``/starmamut``, shown in the UI as the "Starmamut" entry of the navigation (an external view).

Server-rendered HTML: the page reads the staging store and the config (:mod:`starmamut.operator_view.model`);
its three actions are plain form posts. Who the user is and what they may do is Airflow's: the session cookie
the UI's login set (or an ``Authorization: Bearer`` token) is resolved by Airflow's auth manager, a shop × job is
shown only to users who may read its DAG, and only users who may trigger the DAG (``POST`` on its runs) may
re-sync, dismiss or release. Every action is written to Airflow's audit log; a dismissal also stays on the
quarantine entry (who, when, note).

Airflow is imported inside the functions of :class:`AirflowServices` only: every Airflow process that loads the
plugins folder (each task, to find macros) imports this module, and needs no more than FastAPI for that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from starmamut.operator_view.model import (
    ActionRefused,
    Permissions,
    Selection,
    TriggerPlan,
    dismiss,
    overview,
    plan_release,
    plan_resync,
)

log = logging.getLogger(__name__)

MOUNT = "/starmamut"
"""Where the plugin mounts the app in Airflow's API server."""
TEMPLATES = Path(__file__).resolve().parent / "templates"
TOKEN_COOKIE = "_token"  # Airflow's COOKIE_NAME_JWT_TOKEN: the UI's session
MAX_FORM_BYTES = 1 << 20
AUDIT_EVENTS = {"resync": "starmamut.resync", "dismiss": "starmamut.dismiss", "release": "starmamut.release"}

bearer = HTTPBearer(auto_error=False)


class NotAllowed(ActionRefused):
    """The user may not take this action (HTTP 403)."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in user: a name for the audit trail, what they may do, and the page's form token."""

    name: str
    permissions: Permissions
    credential: str  # the JWT the request carried: the form token and the notices are bound to it
    user: Any = None

    @property
    def form_token(self) -> str:
        return hashlib.sha256(f"starmamut-form:{self.credential}".encode()).hexdigest()

    def sign(self, text: str) -> str:
        return hmac.new(self.credential.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Triggered:
    dag_id: str
    run_id: str
    paused: bool


class AirflowServices:
    """What the app needs from Airflow and the engine; tests hand the app a stand-in."""

    async def viewer(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> Viewer:
        """The user behind the request, as Airflow's own API resolves it (bearer token first, else the cookie)."""
        from airflow.api_fastapi.core_api.security import get_user

        user = await get_user(request, None, credentials)
        credential = credentials.credentials if credentials else request.cookies.get(TOKEN_COOKIE, "")
        return Viewer(name=user.get_name(), permissions=AuthManagerPermissions(user), credential=credential, user=user)

    def login_url(self, next_url: str) -> str:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)

    def settings(self) -> Any:
        from starmamut.config import load_settings

        return load_settings()

    def store(self, settings: Any) -> Any:
        from starmamut.airflow_adapter import staging_url

        return _migrated_store(staging_url(settings))

    def trigger(self, plan: TriggerPlan, viewer: Viewer) -> Triggered:
        """A manual DAG run, as the UI's Trigger button makes one (queued; started by the scheduler)."""
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.models.dag import DagModel
        from airflow.utils.types import DagRunTriggeredByType

        model = DagModel.get_current(plan.dag_id)
        if model is None:
            raise ActionRefused(f"Airflow does not know DAG {plan.dag_id} (not parsed yet?)")
        run = trigger_dag(
            plan.dag_id,
            triggered_by=DagRunTriggeredByType.UI,
            triggering_user_name=viewer.name,
            conf=plan.conf,
            note=f"Starmamut view: {plan.what} (by {viewer.name})",
        )
        if run is None:
            raise ActionRefused(f"Airflow did not create a run of {plan.dag_id}")
        return Triggered(dag_id=plan.dag_id, run_id=run.run_id, paused=bool(model.is_paused))

    def audit(self, action: str, viewer: Viewer, details: dict[str, Any], dag_id: str | None = None) -> None:
        """One line in Airflow's audit log (Browse → Audit Log), like the UI's own actions."""
        from airflow.models.log import Log
        from airflow.utils.session import create_session

        with create_session() as session:
            session.add(
                Log(
                    event=AUDIT_EVENTS[action],
                    owner=viewer.name,
                    owner_display_name=viewer.name,
                    dag_id=dag_id,
                    run_id=details.get("run_id"),
                    extra=json.dumps(details, ensure_ascii=False, default=str),
                )
            )


@cache
def _migrated_store(url: str) -> Any:
    from starmamut.staging.store import StagingStore

    store = StagingStore.from_url(url)
    store.migrate()
    return store


class AuthManagerPermissions:
    """Airflow's auth manager on the DAGs of the page, asked once per DAG and method."""

    def __init__(self, user: Any) -> None:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.configuration import conf

        self._manager = get_auth_manager()
        self._user = user
        self._multi_team = conf.getboolean("core", "multi_team", fallback=False)
        self._answers: dict[tuple[str, str], bool] = {}

    def _ask(self, dag_id: str, method: str) -> bool:
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
        from airflow.models.dag import DagModel

        if (dag_id, method) not in self._answers:
            team = DagModel.get_team_name(dag_id) if self._multi_team else None
            self._answers[(dag_id, method)] = self._manager.is_authorized_dag(
                method=method,  # type: ignore[arg-type]
                access_entity=DagAccessEntity.RUN if method == "POST" else None,
                details=DagDetails(id=dag_id, team_name=team),
                user=self._user,
            )
        return self._answers[(dag_id, method)]

    def may_read(self, dag_id: str) -> bool:
        return self._ask(dag_id, "GET")

    def may_trigger(self, dag_id: str) -> bool:
        return self._ask(dag_id, "POST")


# ---------------------------------------------------------------------------------------------------- rendering


@cache
def _templates() -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    environment.filters["when"] = _when
    return environment


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _render_markdown(text: str) -> str:
    """Markdown to HTML with raw HTML escaped (a report holds shop data)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("js-default").render(text)


def _base(request: Request) -> str:
    """This app's path as the browser sees it (Airflow's root path and the mount included)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _airflow_base(request: Request) -> str:
    base = _base(request)
    return base[: -len(MOUNT)] if base.endswith(MOUNT) else ""


# ------------------------------------------------------------------------------------------------------ the app


def create_app(services: AirflowServices | None = None) -> FastAPI:
    """The app the plugin mounts; ``services`` replaces Airflow in tests."""
    app = FastAPI(title="Starmamut", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services or AirflowServices()
    app.include_router(_router())
    return app


def _services(request: Request) -> AirflowServices:
    return request.app.state.services


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def _viewer(request: Request, credentials: Credentials) -> Viewer:
    return await _services(request).viewer(request, credentials)


SignedIn = Annotated[Viewer, Depends(_viewer)]


def _page(
    request: Request, viewer: Viewer, *, notice: str = "", error: str = "", status_code: int = 200
) -> HTMLResponse:
    services = _services(request)
    settings = services.settings()
    store = services.store(settings)
    shops = overview(settings, store, viewer.permissions)
    wanted = request.query_params.get("shop")
    if wanted:
        shops = [view for view in shops if view.shop.id == wanted]
    html = (
        _templates()
        .get_template("index.html")
        .render(
            shops=shops,
            viewer=viewer,
            base=_base(request),
            airflow=_airflow_base(request),
            notice=notice,
            error=error,
            wanted=wanted or "",
        )
    )
    return HTMLResponse(html, status_code=status_code)


async def _form(request: Request, viewer: Viewer) -> dict[str, list[str]]:
    """The posted form (URL-encoded, as the page's forms send it), refused unless it carries the page's token."""
    if len(body := await request.body()) > MAX_FORM_BYTES:
        raise HTTPException(413, "The form is too large.")
    form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    if not hmac.compare_digest(_one(form, "form_token"), viewer.form_token):
        raise HTTPException(403, "The form is stale or did not come from the Starmamut page: reload it and try again.")
    return form


def _one(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


def _done(request: Request, viewer: Viewer, notice: str) -> RedirectResponse:
    """Post/redirect/get: the notice travels signed for this session, so no other page can plant one."""
    query = urlencode({"notice": notice, "sig": viewer.sign(notice)})
    return RedirectResponse(f"{_base(request)}/?{query}", status_code=303)


def _act(request: Request, viewer: Viewer, action: Callable[[], str]) -> Response:
    try:
        notice = action()
    except NotAllowed as exc:
        return _page(request, viewer, error=str(exc), status_code=403)
    except ActionRefused as exc:
        return _page(request, viewer, error=str(exc), status_code=400)
    return _done(request, viewer, notice)


def _selections(selected: Sequence[str] | None) -> list[Selection]:
    return [Selection.decode(value) for value in selected or ()]


def _guarded(permissions: Permissions) -> Permissions:
    """The user's permissions, turning a refused trigger into :class:`NotAllowed` at the point of refusal."""

    class Guarded:
        def may_read(self, dag_id: str) -> bool:
            return permissions.may_read(dag_id)

        def may_trigger(self, dag_id: str) -> bool:
            if not permissions.may_trigger(dag_id):
                raise NotAllowed(f"You may not act on {dag_id}: that needs permission to trigger the DAG.")
            return True

    return Guarded()


def _triggered_line(triggered: Triggered, plan: TriggerPlan) -> str:
    line = f"{plan.what}: triggered {triggered.dag_id} run {triggered.run_id} with {json.dumps(plan.conf)}"
    if triggered.paused:
        line += f" — {triggered.dag_id} is paused: the run waits until it is unpaused"
    return line


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request, credentials: Credentials) -> Response:
        try:
            viewer = await _services(request).viewer(request, credentials)
        except HTTPException as exc:
            if exc.status_code == 401:
                return RedirectResponse(_services(request).login_url(str(request.url)), status_code=303)
            raise
        notice = request.query_params.get("notice", "")
        if notice and not hmac.compare_digest(request.query_params.get("sig", ""), viewer.sign(notice)):
            notice = ""
        return await run_in_threadpool(_page, request, viewer, notice=notice)

    @router.get("/reports/{batch_id}", response_class=HTMLResponse)
    def report(request: Request, batch_id: str, viewer: SignedIn) -> Response:
        services = _services(request)
        settings = services.settings()
        store = services.store(settings)
        for shop in overview(settings, store, viewer.permissions):
            for migration in shop.migrations:
                if migration.batch.batch_id == batch_id:
                    body = (
                        _render_markdown(migration.path.read_text(encoding="utf-8"))
                        if migration.readable and migration.path
                        else ""
                    )
                    html = (
                        _templates()
                        .get_template("report.html")
                        .render(shop=shop.shop, migration=migration, body=body, base=_base(request))
                    )
                    return HTMLResponse(html)
        raise HTTPException(404, f"No migration report {batch_id!r} that you may read")

    @router.post("/resync")
    async def resync(request: Request, viewer: SignedIn) -> Response:
        form = await _form(request, viewer)
        services = _services(request)

        def action() -> str:
            settings = services.settings()
            selections = _selections(form.get("selected"))
            plans = plan_resync(settings, services.store(settings), _guarded(viewer.permissions), selections)
            lines = []
            for plan in plans:
                triggered = services.trigger(plan, viewer)
                services.audit(
                    "resync", viewer, {"conf": plan.conf, "run_id": triggered.run_id}, dag_id=triggered.dag_id
                )
                lines.append(_triggered_line(triggered, plan))
            return "; ".join(lines)

        return await run_in_threadpool(_act, request, viewer, action)

    @router.post("/dismiss")
    async def dismiss_selected(request: Request, viewer: SignedIn) -> Response:
        form = await _form(request, viewer)
        note = _one(form, "note").strip()
        services = _services(request)

        def action() -> str:
            settings = services.settings()
            entries = dismiss(
                settings,
                services.store(settings),
                _guarded(viewer.permissions),
                _selections(form.get("selected")),
                by=viewer.name,
                note=note,
            )
            records = [f"{entry.shop} {entry.entity} {entry.key}" for entry in entries]
            services.audit("dismiss", viewer, {"records": records, "note": note})
            return f"dismissed {', '.join(records)} with the note {note!r}"

        return await run_in_threadpool(_act, request, viewer, action)

    @router.post("/release")
    async def release(request: Request, viewer: SignedIn) -> Response:
        form = await _form(request, viewer)
        batch_id = _one(form, "batch_id")
        services = _services(request)

        def action() -> str:
            settings = services.settings()
            plan = plan_release(settings, services.store(settings), _guarded(viewer.permissions), batch_id)
            triggered = services.trigger(plan, viewer)
            services.audit(
                "release", viewer, {"batch_id": batch_id, "run_id": triggered.run_id}, dag_id=triggered.dag_id
            )
            return _triggered_line(triggered, plan)

        return await run_in_threadpool(_act, request, viewer, action)

    @router.get("/icon.svg")
    def icon() -> Response:
        return Response((TEMPLATES / "icon.svg").read_text(), media_type="image/svg+xml")

    return router
