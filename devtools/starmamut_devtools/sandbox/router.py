"""A small path router, the route-table entry for handlers that are one state call, and query-string helpers.

A resource (orders, customers, …) is a module with a ``ROUTES`` table of (method, pattern, handler): most
handlers are a :class:`StateCall` naming the :class:`~starmamut_devtools.sandbox.state.ShopState` method
to call, the few that build a query object are functions. The tables are wired in
:func:`starmamut_devtools.sandbox.server.build_router`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starmamut_devtools.sandbox.errors import ApiError, bad_request, not_found
from starmamut_devtools.sandbox.validation import parse_timestamp

if TYPE_CHECKING:
    from starmamut_devtools.sandbox.state import ShopState


@dataclass(frozen=True)
class ApiRequest:
    """One authenticated API call as a handler sees it (path without the ``/api/v2`` prefix)."""

    method: str
    path: str
    path_params: dict[str, Any]
    query: dict[str, str]
    body: Any
    client_id: str | None


@dataclass(frozen=True)
class ApiResponse:
    """Status and JSON body (None for 204)."""

    status: int
    body: Any = None


def data_response(payload: Any, status: int = 200) -> ApiResponse:
    """The spec's envelope for one object or a list without pagination."""
    return ApiResponse(status, {"data": payload})


def deleted_response() -> ApiResponse:
    return ApiResponse(204)


Handler = Callable[["ShopState", ApiRequest], ApiResponse]


@dataclass(frozen=True, eq=False)
class StateCall:
    """A handler that is one :class:`ShopState` call, for a route table.

    The method ``name`` gets, positionally: the path parameters in the pattern's order, then (``includes``:
    supported and unsupported names) the checked ``include`` list, then (``body``) the request body; as keywords
    ``fixed`` and what ``options`` reads from the request. Query parameters are checked before the call, so a bad
    one is a 400 even where the resource does not exist. The answer is the result in the ``data`` envelope with
    ``status`` (201 for a create), or 204 without a body (``status=204``, a delete). Compared by identity, as
    a function would be, so every route is its own handler.
    """

    name: str
    body: bool = False
    status: int = 200
    includes: tuple[Iterable[str], Iterable[str]] | None = None
    options: Callable[[ApiRequest], dict[str, Any]] | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, state: ShopState, request: ApiRequest) -> ApiResponse:
        args: list[Any] = list(request.path_params.values())
        if self.includes is not None:
            args.append(query_includes(request, *self.includes))
        if self.body:
            args.append(request.body)
        kwargs = {**self.fixed, **(self.options(request) if self.options else {})}
        result = getattr(state, self.name)(*args, **kwargs)
        return deleted_response() if self.status == 204 else data_response(result, self.status)


RouteTable = Sequence[tuple[str, str, Handler]]

_PLACEHOLDER = re.compile(r"\{(\w+)(?::(int))?\}")


@dataclass(frozen=True)
class Route:
    """One registered route; ``pattern`` as given to :meth:`Router.add`."""

    method: str
    pattern: str
    regex: re.Pattern[str]
    int_params: frozenset[str]
    handler: Handler


class Router:
    """Maps (method, path) to a handler; ``{name:int}`` segments arrive as ints, others as strings.

    ``spec_operations`` (path template to space-separated methods, as in
    :data:`~starmamut_devtools.sandbox.spec_operations.SPEC_OPERATIONS`) lets :meth:`resolve` answer an operation the
    spec has but no route implements with 501 rather than 404.
    """

    def __init__(self, spec_operations: Mapping[str, str] | None = None) -> None:
        self._routes: list[Route] = []
        self._spec = [
            (_path_regex(template)[0], template, frozenset(methods.split()))
            for template, methods in (spec_operations or {}).items()
        ]

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex, int_params = _path_regex(pattern)
        self._routes.append(Route(method.upper(), pattern, regex, int_params, handler))

    def add_table(self, routes: RouteTable) -> None:
        """Add every (method, pattern, handler) of a route table, in its order."""
        for method, pattern, handler in routes:
            self.add(method, pattern, handler)

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, Any]]:
        """The handler and path parameters, or the error Starweb would answer without a handler: 501 for an
        operation of the spec that no route implements, 405 for a method the path does not have, 404 for
        anything else (an unknown path, or an id that is not a number where the route wants one)."""
        method = method.upper()
        path_matched = False
        for route in self._routes:
            match = route.regex.match(path)
            if match is None:
                continue
            path_matched = True
            if route.method == method:
                params = {
                    name: int(value) if name in route.int_params else value for name, value in match.groupdict().items()
                }
                return route.handler, params
        implemented = {(route.method, _shape(route.pattern)) for route in self._routes}
        spec_methods: set[str] = set()
        for regex, template, methods in self._spec:
            if regex.match(path) is None:
                continue
            spec_methods |= methods
            if method in methods and (method, _shape(template)) not in implemented:
                raise ApiError(501, "not_implemented", f"the sandbox does not implement {method} {template}")
        if path_matched or (spec_methods and method not in spec_methods):
            raise ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}")
        raise not_found(f"no resource at {path}")


def _path_regex(pattern: str) -> tuple[re.Pattern[str], frozenset[str]]:
    """The regex matching a path pattern and the names of its ``{name:int}`` parameters."""
    pieces: list[str] = []
    int_params: set[str] = set()
    for part in re.split(r"(\{\w+(?::int)?\})", pattern):
        placeholder = _PLACEHOLDER.fullmatch(part)
        if placeholder is None:
            pieces.append(re.escape(part))
            continue
        name, kind = placeholder.groups()
        if kind == "int":
            int_params.add(name)
        pieces.append(f"(?P<{name}>[0-9]+)" if kind == "int" else f"(?P<{name}>[^/]+)")
    return re.compile("^" + "".join(pieces) + "$"), frozenset(int_params)


def _shape(pattern: str) -> str:
    """A path pattern with its parameters unnamed, so a route and the spec's template compare equal."""
    return _PLACEHOLDER.sub("{}", pattern)


def query_page(request: ApiRequest) -> int:
    """The ``page`` parameter: an integer >= 1, default 1."""
    raw = request.query.get("page")
    if raw is None:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise bad_request(f"page: expected an integer >= 1, got {raw!r}")
    return int(raw)


def query_bool(request: ApiRequest, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise bad_request(f"{name}: expected true or false, got {raw!r}")


def query_timestamp(request: ApiRequest, name: str) -> datetime | None:
    raw = request.query.get(name)
    return None if raw is None else parse_timestamp(raw, name)


def query_choice(request: ApiRequest, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in choices:
        raise bad_request(f"{name}: {raw!r} is not one of {', '.join(choices)}")
    return raw


def query_includes(request: ApiRequest, supported: Iterable[str], unsupported: Iterable[str] = ()) -> frozenset[str]:
    """The comma-separated ``include`` list; includes the spec has but the sandbox lacks are a clear 400."""
    raw = request.query.get("include", "")
    requested = frozenset(part.strip() for part in raw.split(",") if part.strip())
    supported_set, unsupported_set = frozenset(supported), frozenset(unsupported)
    for name in sorted(requested - supported_set):
        if name in unsupported_set:
            raise bad_request(f"include: {name!r} is not supported by the sandbox")
        raise bad_request(f"include: unknown include {name!r}; available: {', '.join(sorted(supported_set))}")
    return requested
