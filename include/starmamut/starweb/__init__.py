"""Starweb Shop API v2: the HTTP client, its errors and the per-shop request pacer shared across processes."""

from starmamut.starweb.client import ClientStats, StarwebClient, StarwebCredentials
from starmamut.starweb.errors import (
    StarwebAmbiguousWrite,
    StarwebAuthError,
    StarwebClockSkew,
    StarwebError,
    StarwebIncompleteListing,
    StarwebNotFound,
    StarwebRateLimited,
    StarwebUnavailable,
)
from starmamut.starweb.ratelimit import FilePacer, RedisPacer, RequestPacer, pacer_from_url

__all__ = [
    "ClientStats",
    "FilePacer",
    "RedisPacer",
    "RequestPacer",
    "StarwebAmbiguousWrite",
    "StarwebAuthError",
    "StarwebClient",
    "StarwebClockSkew",
    "StarwebCredentials",
    "StarwebError",
    "StarwebIncompleteListing",
    "StarwebNotFound",
    "StarwebRateLimited",
    "StarwebUnavailable",
    "pacer_from_url",
]
