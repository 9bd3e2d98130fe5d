"""Routes: the names requests are known by, which faults and the request log use."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

UNMATCHED = "unmatched"


@dataclass(frozen=True)
class Route:
    """A route: its name (what faults are keyed on), method and full-path pattern."""

    name: str
    method: str
    pattern: re.Pattern[str]


class RouteMatch(NamedTuple):
    """The route a request matched (or ``UNMATCHED``), with the path's parameters.

    ``allowed_methods`` lists the methods of routes whose pattern matched the
    path, so an unmatched request with a known path is a 405, not a 404.
    """

    name: str
    params: dict[str, str]
    allowed_methods: tuple[str, ...]


def match_route(routes: tuple[Route, ...], method: str, path: str) -> RouteMatch:
    """Find the route for ``method`` and ``path``."""
    allowed: list[str] = []
    for route in routes:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            return RouteMatch(route.name, found.groupdict(), (method,))
        allowed.append(route.method)
    return RouteMatch(UNMATCHED, {}, tuple(allowed))


class Target(NamedTuple):
    """A request target split into its path and query (both as sent)."""

    path: str
    query: str
