"""The workbench's web app (Starlette, Jinja2 templates, plain JavaScript): two pages and a small JSON API.

    GET  /                 search as a shopper: products, their score's parts, model versions, degraded reasons,
                           ratings, feedback buttons and the events sent for the shopper
    GET  /compare          one query under two configurations side by side, with moves and overlap
    GET  /api/search       one explained answer as JSON (the search page's fields)
    POST /api/judgments    save a rating {server, shop, query, product_id, gain, rankings}: answers nDCG@10 again
    POST /api/feedback     send a click, cart or purchase {server, user, product_id, type, request_id, position}

A WorkbenchError becomes, here and only here, the page with its message (or a JSON body {"error": ...} for /api/)
and its HTTP status; anything else is logged and answered as a 500 that says so, never with a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from core._proto.shoprank.v1 import ranking_pb2
from core.catalog import Product, check_shop, load_catalog
from core.errors import DataError

from . import views
from .client import Services
from .config import WorkbenchConfig
from .errors import BadInput, WorkbenchError
from .events import SentEvent, SentEvents
from .forms import BLEND_GROUPS, EVENT_TYPES, SUGGESTED_ARMS, SearchForm, gain_of, product_ids, search_form, side_form
from .judgments import Judgments

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
MAX_BODY = 256 * 1024


class Workbench:
    """What the pages share: the configuration, the services' client, the catalogs, the ratings and the events."""

    def __init__(self, config: WorkbenchConfig, services: Services | None = None) -> None:
        self.config = config
        self.services = services or Services(config)
        self.catalogs: dict[str, dict[str, Product]] = {
            shop: {product.product_id: product for product in load_catalog(path)} for shop, path in config.catalogs}
        self.judgments = Judgments(config.judgments_file)
        self.events = SentEvents()
        self.shops: dict[str, str] = {}  # server -> the shop its answers named

    def servers(self) -> list[tuple[str, str]]:
        """(address, label) of each server for the shop picker: its shop's name once it has answered."""
        return [(address, f"{self.shops[address]} ({address})" if address in self.shops else address)
                for address in self.config.servers]

    async def search(self, server: str, request: ranking_pb2.SearchRequest) -> ranking_pb2.SearchResponse:
        response = await self.services.search(server, request)
        if response.shop:
            self.shops[server] = response.shop
        return response

    def products(self, shop: str) -> dict[str, Product]:
        return self.catalogs.get(shop, {})

    def choices(self, server: str) -> dict[str, list[str]]:
        """The values the filters suggest: the shop's categories and brands, from its catalog."""
        products = self.products(self.shops.get(server, "")) or (
            next(iter(self.catalogs.values())) if len(self.catalogs) == 1 else {})
        return {"category": sorted({p.category for p in products.values() if p.category}),
                "brand": sorted({p.brand for p in products.values() if p.brand})}


def create_app(config: WorkbenchConfig, services: Services | None = None) -> Starlette:
    """The workbench's app for `config`; `services` replaces the gRPC client (tests of pure pages only)."""
    bench = Workbench(config, services)
    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(),
                            trim_blocks=True, lstrip_blocks=True)
    templates.filters["money"] = lambda value: "" if value is None else f"${value:,.2f}"
    templates.filters["number"] = lambda value, digits=3: "—" if value is None else f"{value:.{digits}f}"
    templates.filters["tojson_attr"] = lambda value: json.dumps(value, ensure_ascii=False)

    def render(name: str, context: dict, status: int = 200) -> HTMLResponse:
        page = templates.get_template(name).render(servers=bench.servers(), blend_groups=BLEND_GROUPS,
                                                   suggested_arms=SUGGESTED_ARMS, legend_groups=views.legend_groups,
                                                   **context)
        return HTMLResponse(page, status_code=status)

    def _judged(shop: str, query: str, context: dict) -> dict[str, float]:
        """The query's judgments in the shop's file; an unreadable file is a note in the page, not a failed search."""
        if not shop:
            return {}
        try:
            return bench.judgments.of(shop).judged(query)
        except WorkbenchError as error:
            context["judgments_error"] = str(error)
            return {}

    async def page(name: str, build: Callable[[dict], Awaitable[None]]) -> HTMLResponse:
        """Render `name` with what `build` puts in the context; a WorkbenchError is shown in the page."""
        context: dict = {"form": SearchForm(server=config.servers[0], top_k=config.top_k), "error": None}
        started = time.perf_counter()
        try:
            await build(context)
            status = 200
        except WorkbenchError as error:
            context["error"], status = str(error), error.status
        context["page_ms"] = (time.perf_counter() - started) * 1000.0
        form = context["form"]
        context.setdefault("choices", bench.choices(form.server))
        context.setdefault("users", bench.events.users(form.server))
        context.setdefault("events", bench.events.of(form.server, form.user_id) if form.user_id else [])
        return render(name, context, status)

    async def search_page(request: Request) -> HTMLResponse:
        async def build(context: dict) -> None:
            form = context["form"] = search_form(request.query_params, config)
            context["since"] = since = product_ids(request.query_params.get("since", ""), "since")
            context["sent"] = _sent(request.query_params.get("sent", ""))
            if not form.query:
                return
            response = await bench.search(form.server, form.request())
            colors = context["colors"] = views.legend([response])
            judged = _judged(response.shop, form.query, context)
            context["answer"] = views.answer_view(response, bench.products(response.shop), judged, colors,
                                                  since if since else None)

        return await page("search.html", build)

    async def compare_page(request: Request) -> HTMLResponse:
        async def build(context: dict) -> None:
            params = request.query_params
            form = context["form"] = search_form(params, config)
            sides = context["sides"] = {"left": side_form(params, "left", "default"),
                                        "right": side_form(params, "right", "fused")}
            if not form.query:
                context["experiments"] = await _experiments(form.server)
                return
            base = form.request()
            asked = {}
            for name, side in sides.items():
                try:
                    asked[name] = bench.search(form.server, side.request(base))
                except WorkbenchError as error:
                    asked[name] = _failed(error)
            experiments, *answered = await asyncio.gather(_experiments(form.server), *asked.values(),
                                                          return_exceptions=True)
            answers = dict(zip(asked, answered))
            for answer in (experiments, *answered):
                if isinstance(answer, BaseException) and not isinstance(answer, WorkbenchError):
                    raise answer
            context["experiments"] = experiments
            good = {name: answer for name, answer in answers.items() if not isinstance(answer, BaseException)}
            if not good:
                raise next(iter(answers.values()))
            context["side_errors"] = {name: str(answer) for name, answer in answers.items()
                                      if isinstance(answer, BaseException)}
            colors = context["colors"] = views.legend(good.values())
            shop = next(iter(good.values())).shop
            judged = _judged(shop, form.query, context)
            ids = context["rankings"] = {name: [item.product_id for item in answer.items]
                                         for name, answer in good.items()}
            other = {"left": "right", "right": "left"}
            context["answers"] = {
                name: views.answer_view(answer, bench.products(answer.shop), judged, colors, ids.get(other[name]))
                for name, answer in good.items()}
            if len(ids) == 2:
                context["overlap"] = views.overlap(ids["left"], ids["right"])

        async def _experiments(server: str) -> dict:
            if not config.admin_of(server):
                return {"rows": None, "error": ""}
            try:
                return {"rows": views.experiment_rows(await bench.services.experiments(server)), "error": ""}
            except WorkbenchError as error:  # the comparison works without them
                return {"rows": None, "error": str(error)}

        return await page("compare.html", build)

    async def api(build: Callable[[], Awaitable[dict]]) -> JSONResponse:
        try:
            return JSONResponse(await build())
        except WorkbenchError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)

    async def api_search(request: Request) -> JSONResponse:
        async def build() -> dict:
            form = search_form(request.query_params, config)
            if not form.query:
                raise BadInput("q: give a query")
            response = await bench.search(form.server, form.request())
            judged = _judged(response.shop, form.query, {})
            view = views.answer_view(response, bench.products(response.shop), judged, views.legend([response]))
            return views.as_json(view)

        return await api(build)

    async def api_judgments(request: Request) -> JSONResponse:
        async def build() -> dict:
            body = await _body(request)
            query = _field(body, "query")
            product_id = _field(body, "product_id")
            try:
                shop = check_shop(_field(body, "shop"))
            except DataError as error:
                raise BadInput(str(error)) from None
            gain = gain_of(body.get("gain"))
            rankings = body.get("rankings") or {}
            if not isinstance(rankings, dict) or not all(isinstance(ids, list) for ids in rankings.values()):
                raise BadInput("rankings: an object of lists of product ids")
            store = bench.judgments.of(shop)
            await asyncio.to_thread(store.rate, query, product_id, gain)
            judged = store.judged(query)
            return {"saved": True, "file": str(store.path), "query": query, "product_id": product_id, "gain": gain,
                    "quality": {name: views.as_json(views.quality([str(pid) for pid in ids], judged))
                                for name, ids in rankings.items()}}

        return await api(build)

    async def api_feedback(request: Request) -> JSONResponse:
        async def build() -> dict:
            body = await _body(request)
            server = _field(body, "server")
            if server not in config.servers:
                raise BadInput(f"server {server!r} is not one this workbench was started with")
            user_id, product_id, kind = _field(body, "user"), _field(body, "product_id"), _field(body, "type")
            if kind not in EVENT_TYPES:
                raise BadInput(f"type must be one of {', '.join(EVENT_TYPES)}, not {kind!r}")
            position = body.get("position")
            if not isinstance(position, int) or isinstance(position, bool) or position < 1:
                raise BadInput("position: the product's 1-based position in the answer")
            event = ranking_pb2.FeedbackEvent(event_id=uuid.uuid4().hex, user_id=user_id, product_id=product_id,
                                              type=EVENT_TYPES[kind], query=str(body.get("query") or ""),
                                              request_id=str(body.get("request_id") or ""), position=position)
            event.time.GetCurrentTime()
            ack = await bench.services.feedback(server, event)
            bench.events.add(server, user_id, SentEvent(at=time.time(), kind=kind, product_id=product_id,
                                                        title=str(body.get("title") or ""), query=event.query,
                                                        position=position))
            return {"recorded": True, "duplicate": ack.duplicate, "event_id": event.event_id}

        return await api(build)

    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("workbench: %s %s failed", request.method, request.url.path)
        message = f"the workbench failed ({type(error).__name__}); its log has the details"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=500)
        return render("error.html", {"form": SearchForm(server=config.servers[0]), "error": message}, 500)

    async def not_found(request: Request, error: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": f"no such call: {request.url.path}"}, status_code=404)
        return render("error.html", {"form": SearchForm(server=config.servers[0]),
                                     "error": f"no such page: {request.url.path}"}, 404)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            yield
        finally:
            await bench.services.close()

    routes = [Route("/", search_page), Route("/compare", compare_page), Route("/api/search", api_search),
              Route("/api/judgments", api_judgments, methods=["POST"]),
              Route("/api/feedback", api_feedback, methods=["POST"]),
              Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={Exception: unexpected, 404: not_found})
    app.state.workbench = bench
    return app


async def _failed(error: WorkbenchError):
    raise error


async def _body(request: Request) -> dict:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise BadInput(f"the body has {len(raw)} bytes; at most {MAX_BODY}")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise BadInput("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object")
    return body


def _field(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{name}: a non-empty string is required")
    return value.strip()


def _sent(text: str) -> tuple[str, str] | None:
    """The feedback the page sent just before it ran the search again ("purchase:D0029"), or None."""
    kind, _, product_id = text.partition(":")
    return (kind, product_id) if kind in EVENT_TYPES and product_id else None
