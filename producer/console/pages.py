"""The console's pages under ``/ui``: server-rendered Jinja2 templates (autoescaped: every label, id, reason and
Genesys text is shown as text) with a few plain JavaScript modules from ``/ui/static`` that keep them live through
the intake's own API (``/v1/...``, ``producer.console.api``). There is no second backend: a page reads what the API
reads, through the same shared reads, and every action is an API call with the session's CSRF token.

``SecurityHeaders`` gives every ``/ui`` answer a strict Content-Security-Policy (scripts and styles from this origin
only, no inline script, no framing), ``nosniff``, no referrer beyond this origin and no caching; the ``/v1`` answers
the pages read get ``nosniff`` and no caching too.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genesys_closer.config.orgs import DEFAULT_ORG
from genesys_closer.producer.console.api import OperatorReads
from genesys_closer.producer.console.auth import ConsoleAuth, same_origin
from genesys_closer.producer.console.sessions import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    new_token,
    same_token,
    set_cookie,
)
from genesys_closer.producer.intake_http import IntakeError
from genesys_closer.shared.outcomes import Outcome

HERE = Path(__file__).parent
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
API_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
LOGIN_FORM_SECONDS = 900
OUTCOMES = [o.value for o in Outcome]
# Outcome colours of the stacked bars: success, trouble, and the rest.
GOOD = {o.value for o in Outcome if o.succeeded}


class SecurityHeaders:
    """The page headers above on every answer under ``/ui`` (pages, static files, redirects, errors), and
    ``API_HEADERS`` on every ``/v1`` answer: the data the pages show (batches, results, exports) is fetched there
    with the session cookie, and a browser's cache must not keep it either."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", "")) if scope["type"] == "http" else ""
        added = PAGE_HEADERS if path.startswith("/ui") else API_HEADERS if path.startswith("/v1/") else None
        if added is None:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in added.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def outcome_class(name: str) -> str:
    return "good" if name in GOOD else ("bad" if name in {"failed", "unconfirmed", "forbidden"} else "other")


def when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(seconds))) if seconds else ""


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def segments(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The stacked bar of a batch: one segment per outcome, as a share of the total (SVG widths, no inline CSS)."""
    total = status.get("total") or sum(status["counts"].values()) or 1
    out, x = [], 0.0
    for name, count in sorted(status["counts"].items(), key=lambda kv: (outcome_class(kv[0]) != "good", kv[0])):
        width = 100.0 * count / total
        out.append({"name": name, "count": count, "x": round(x, 3), "width": round(width, 3),
                    "cls": outcome_class(name)})
        x += width
    return out


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(when=when, duration=duration, segments=segments, outcome_class=outcome_class,
                       OUTCOMES=OUTCOMES)
    return env


def add_console(app: FastAPI, reads: OperatorReads, auth: ConsoleAuth) -> None:
    env = environment()
    sessions = auth.sessions
    lifetime = sessions.lifetime
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="console-static")

    def render(name: str, request: Request, session: Session | None, status: int = 200, **context: Any
               ) -> HTMLResponse:
        html = env.get_template(name).render(request=request, csrf=session.csrf if session else "",
                                             logged_in=session is not None, **context)
        return HTMLResponse(html, status_code=status)

    async def session_of(request: Request) -> Session | None:
        """The request's live session (its rate-limit slot taken), or None: the page then sends to the login."""
        session = await auth.session(request)
        if session is not None:
            await auth.guard.admit(session.credential)
        return session

    _login_routes(app, auth, render, lifetime)
    _pages(app, reads, auth, render, session_of)


def to_login() -> Response:
    return RedirectResponse("/ui/login", status_code=303)


Render = Callable[..., HTMLResponse]


def _login_routes(app: FastAPI, auth: ConsoleAuth, render: Render, lifetime: int) -> None:
    sessions = auth.sessions

    @app.get("/ui", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/ui/batches", status_code=303)

    @app.get("/ui/login", include_in_schema=False)
    async def login_page(request: Request) -> Response:
        token = new_token()
        response = render("login.html", request, None, login_csrf=token, error="")
        set_cookie(response, request, LOGIN_COOKIE, token, LOGIN_FORM_SECONDS)
        return response

    @app.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        if not same_token(form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE) or "\0") or not same_origin(request):
            # A stale or forged form: a fresh one. The Origin check stops a page on a sibling port or subdomain, which
            # can plant the double-submit cookie, from logging the operator in to a credential of its choosing.
            return await login_page(request)
        await auth.logins.admit(request)
        user, password, token = form.get("username", ""), form.get("password", ""), form.get("token", "").strip()
        header = (f"Basic {base64.b64encode(f'{user}:{password}'.encode()).decode()}" if user
                  else f"Bearer {token}")
        try:
            who = auth.guard.identify_header(header)
        except IntakeError:
            again = new_token()
            refused = render("login.html", request, None, status=401, login_csrf=again,
                             error="That credential is not one of the intake's.")
            set_cookie(refused, request, LOGIN_COOKIE, again, LOGIN_FORM_SECONDS)
            return refused
        await auth.guard.admit(who.credential)
        session_id, _ = await run_in_threadpool(sessions.create, who.credential, frozenset(who.orgs))
        response: Response = RedirectResponse("/ui/batches", status_code=303)
        set_cookie(response, request, SESSION_COOKIE, session_id, lifetime)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @app.post("/ui/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        session = await run_in_threadpool(sessions.find, request.cookies.get(SESSION_COOKIE))
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        if session is not None:
            if not same_token(form.get(CSRF_FIELD), session.csrf) or not same_origin(request):
                raise IntakeError(403, "csrf", "this request lacks the console's CSRF token; reload the page")
            await run_in_threadpool(sessions.revoke, session)
        response = to_login()
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def _pages(app: FastAPI, reads: OperatorReads, auth: ConsoleAuth, render: Render,
           session_of: Callable[[Request], Awaitable[Session | None]]) -> None:
    def org_of(session: Session, requested: str | None, not_found: str) -> str:
        """The org a page shows (IntakeError as the API answers for an org not granted). A page asked for without
        one (the nav's links) shows ``default`` when granted, else the first of the credential's orgs: the API
        wants an org named, a page has a chooser."""
        if not requested and DEFAULT_ORG not in session.orgs and session.orgs:
            requested = min(session.orgs)
        return auth.make_caller(session.credential, session.orgs).org(requested, not_found)

    def org_of_page(session: Session, requested: str | None) -> str | None:
        """``org_of`` for a page: None for an org this login is not granted (the page then says so, as HTML)."""
        try:
            return org_of(session, requested, "no such org")
        except IntakeError:
            return None

    def no_org(request: Request, session: Session, page: str) -> HTMLResponse:
        return render("missing.html", request, session, status=404, page=page, what="org")

    def scope(session: Session, org: str) -> dict[str, Any]:
        """What every org-aware page needs: the org shown and, with several, the others to choose from."""
        return {"org": org, "orgs": sorted(session.orgs) if len(session.orgs) > 1 else []}

    @app.get("/ui/batches", include_in_schema=False)
    async def batches_page(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()
        batches = await run_in_threadpool(reads.recent, session.orgs, 50)
        return render("batches.html", request, session, page="batches", batches=batches,
                      with_org=len(session.orgs) > 1 or any(b["org"] != DEFAULT_ORG for b in batches))

    @app.get("/ui/batches/{batch_id}", include_in_schema=False)
    async def batch_page(request: Request, batch_id: str, org: str | None = Query(None, max_length=40)) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()
        try:
            chosen = org_of(session, org, "no such batch")
            status = await run_in_threadpool(reads.batch, chosen, batch_id)
        except IntakeError:
            return render("missing.html", request, session, status=404, page="batch", what="batch")
        first = await run_in_threadpool(reads.items, chosen, batch_id, None, "", 0, 50)
        return render("batch.html", request, session, page="batch", batch=status, items=first["items"],
                      cursor=first["cursor"], **scope(session, chosen))

    @app.get("/ui/new", include_in_schema=False)
    async def new_page(request: Request, org: str | None = Query(None, max_length=40)) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()
        chosen = org_of_page(session, org)
        if chosen is None:
            return no_org(request, session, "new")
        return render("new.html", request, session, page="new", max_ids=reads.settings.intake_max_batch_ids,
                      **scope(session, chosen))

    async def org_page(request: Request, org: str | None, page: str,
                       extra: Callable[[str], dict[str, Any]] | None = None) -> Response:
        """A page that acts for one of the session's orgs (``org``, or its first): login, "no such org", or the page."""
        session = await session_of(request)
        if session is None:
            return to_login()
        chosen = org_of_page(session, org)
        if chosen is None:
            return no_org(request, session, page)
        values = await run_in_threadpool(extra, chosen) if extra is not None else {}
        return render(f"{page}.html", request, session, page=page, **values, **scope(session, chosen))

    def fleet_values(org: str) -> dict[str, Any]:
        return {"fleet": reads.fleet(org), "workers": reads.workers()}

    @app.get("/ui/sweep", include_in_schema=False)
    async def sweep_page(request: Request, org: str | None = Query(None, max_length=40)) -> Response:
        return await org_page(request, org, "sweep")

    @app.get("/ui/readiness", include_in_schema=False)
    async def readiness_page(request: Request, org: str | None = Query(None, max_length=40)) -> Response:
        return await org_page(request, org, "readiness")

    @app.get("/ui/fleet", include_in_schema=False)
    async def fleet_page(request: Request, org: str | None = Query(None, max_length=40)) -> Response:
        return await org_page(request, org, "fleet", fleet_values)
