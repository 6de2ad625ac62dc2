"""The workbench's configuration: one frozen object, built by `shoprank workbench` from its options and environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.catalog import shop_of
from core.errors import ConfigError

DEMO_CATALOG = Path("data/demo/catalog.csv")
# Where ratings go when no --judgments-out is given: one file a shop ({shop} is the shop's name).
DEFAULT_JUDGMENTS = ".shoprank/workbench/{shop}-judgments.csv"


@dataclass(frozen=True)
class WorkbenchConfig:
    """What the workbench talks to and where it writes."""

    servers: tuple[str, ...]  # host:port of each shop's ranking service (the public API), the first the default
    admins: tuple[str, ...] = ()  # host:port of the admin API of the server at the same position ("" for none)
    admin_token: str = ""  # the services' admin token (SHOPRANK_ADMIN_TOKEN), sent as `authorization: Bearer ...`
    catalogs: tuple[tuple[str, Path], ...] = ()  # (shop, catalog file): product details shown beside its answers
    judgments_out: str = DEFAULT_JUDGMENTS  # a CSV file; "{shop}" in it is replaced by the shop's name
    host: str = "127.0.0.1"
    port: int = 8080
    top_k: int = 10  # results a page asks for unless the form says otherwise
    timeout_s: float = 10.0  # the longest a call to a service may take
    api_token: str = ""  # the public API's token, for services that require one (SHOPRANK_API_TOKEN)
    tls_ca: Path | None = None  # connect over TLS, verifying the services' certificates against this CA (PEM)
    tls_cert: Path | None = None  # the workbench's own certificate and key, for services that require one (mTLS)
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        if not self.servers:
            raise ConfigError("the workbench needs at least one --server HOST:PORT")
        for address in (*self.servers, *filter(None, self.admins)):
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"{address!r} is not HOST:PORT")
        if len(self.admins) > len(self.servers):
            raise ConfigError("more --admin than --server: each --admin is the admin API of the --server at its "
                              "position")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"--port {self.port} is not a TCP port")
        if not 1 <= self.top_k <= 1000:
            raise ConfigError("top_k must be 1..1000")
        if Path(self.judgments_out).suffix.lower() != ".csv":
            raise ConfigError(f"--judgments-out {self.judgments_out}: the workbench writes judgments as CSV (.csv)")

    def admin_of(self, server: str) -> str:
        """The admin API address paired with `server`, or ""."""
        position = self.servers.index(server)
        return self.admins[position] if position < len(self.admins) else ""

    def judgments_file(self, shop: str) -> Path:
        """The judgments file of a shop."""
        return Path(self.judgments_out.replace("{shop}", shop or "default"))


def catalog_entry(text: str) -> tuple[str, Path]:
    """`SHOP=FILE` or `FILE` (the shop is then the catalog folder's name, as `shoprank index` names it)."""
    shop, separator, file = text.partition("=")
    if separator and shop and "/" not in shop:
        return shop_of(file, shop), Path(file)
    return shop_of(text), Path(text)
