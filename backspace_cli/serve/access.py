"""Who may use the server: the Host and Origin checks that keep web pages out, and the API key."""
import hmac
import ipaddress

from starlette.datastructures import Headers
from starlette.requests import Request

from backspace_convert.errors import UserError

from .errors import ApiError

ANY = "*"  # as --allow-host or --allow-origin: every host, or every origin
LOCAL_NAMES = {"localhost"}


def check_api_key(api_key: str | None) -> None:
    """A key that an HTTP header cannot carry as it is would never match: say so before the server starts."""
    if api_key is not None and not (api_key.isascii() and api_key.isprintable() and api_key == api_key.strip()):
        raise UserError("--api-key must be printable ASCII with no spaces at its ends: "
                        "no client can send anything else in an Authorization header")


def authorize(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
        raise ApiError(401, "a valid API key is needed: Authorization: Bearer KEY", code="invalid_api_key")


def _host_name(host: str) -> str | None:
    """The name or address in a Host header ('[::1]:8080' gives '::1'); None when it is no host[:port]."""
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return None
        port = port[1:]
    else:
        name, _, port = host.partition(":")
    if not name or (port and not port.isdigit()):
        return None
    return name.lower()


def _address(name: str):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


class Access:
    """Which Host and Origin headers the server answers.

    A page on another site can make a browser send requests here: as a cross-origin POST (the browser
    names its site in Origin), or, after pointing its own domain at this machine (DNS rebinding), as a
    same-origin one that names that domain in Host. So Host must name this server, and Origin, when a
    browser sends one, must be this server's own page, unless the command line allows more.
    """

    def __init__(self, bound: str, hosts: tuple[str, ...] = (), origins: tuple[str, ...] = ()) -> None:
        self.names, self.addresses = set(LOCAL_NAMES), set()
        for host in (bound, *hosts):
            address = _address(host.strip("[]"))
            if address is None:
                self.names.add(host.lower())
            else:
                self.addresses.add(address)
        # Bound to every interface, the server has addresses it cannot list; an address in Host is safe,
        # since rebinding needs a name.
        self.any_address = any(address.is_unspecified for address in self.addresses)
        self.origins = {origin.rstrip("/").lower() for origin in origins}

    def allows_host(self, host: str | None) -> bool:
        if host is None or ANY in self.names:  # no browser leaves Host out
            return True
        name = _host_name(host)
        if name is None:
            return False
        address = _address(name)
        if address is None:
            return name in self.names
        return self.any_address or address.is_loopback or address in self.addresses

    def allows_origin(self, origin: str | None, host: str | None) -> bool:
        if origin is None or ANY in self.origins:  # OpenAI's clients and curl send no Origin
            return True
        scheme, _, rest = origin.lower().partition("://")
        # The server's own page: the Host that was checked above, over plain HTTP or a TLS proxy.
        if scheme in ("http", "https") and host is not None and rest == host.lower():
            return True
        return origin.rstrip("/").lower() in self.origins

    def refusal(self, headers: Headers) -> ApiError | None:
        host, origin = headers.get("host"), headers.get("origin")
        if not self.allows_host(host):
            return ApiError(403, f"Host {host[:100]!r} is not this server's; --allow-host lets it in",
                            code="host_not_allowed")
        if not self.allows_origin(origin, host):
            return ApiError(403, f"requests from {origin[:100]!r} are not allowed; --allow-origin lets it in",
                            code="origin_not_allowed")
        return None


class AccessGuard:
    """ASGI middleware: a request that Access refuses gets a 403 before any route sees it."""

    def __init__(self, app, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            refusal = self.access.refusal(Headers(scope=scope))
            if refusal is not None:
                await refusal.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
