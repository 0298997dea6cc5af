"""The dashboard's pages and forms. Thin: read the request, call kiosk.admin, render a template.

Paths (none collides with the JSON API, which never uses these names):
- `/admin/` overview, `/admin/login`, `/admin/logout` (with `everywhere=yes`: every session ends);
- everything else under `/admin/ui/`: jobs, jobs/{id}, failed, deliveries, workers, periodic,
  schedules, schedules/{id}, exports, devices, audit, attention (payments needing an operator),
  static;
- `/admin/attention`: a redirect to the attention page.

Pages need the session cookie; the JSON API under `/admin/...` needs the bearer token and ignores
the cookie, so a forged cross-site request can never reach it with the operator's credentials.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import uuid
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

import psycopg
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from kiosk import audit, db, exports, http_errors
from kiosk.admin import actions, jobs, periodic
from kiosk.auth import token_matches
from kiosk.dashboard import charts, forms, session
from kiosk.dashboard.render import render
from kiosk.devices import store as devices
from kiosk.errors import DomainError
from kiosk.exports.routes import csv_response
from kiosk.jobs import outcomes
from kiosk.logclip import clip
from kiosk.notifications import deliveries
from kiosk.payments import attention
from kiosk.queues import service as queues
from kiosk.schedules import service as schedules
from kiosk.schedules.spec import InvalidSchedule
from kiosk.settings import get_settings

logger = logging.getLogger("kiosk.dashboard")

LOGIN = "/admin/login"
LOGOUT = "/admin/logout"
HOME = "/admin/"
UI = "/admin/ui"
PAGE_SIZE = 50
# KIOSK_ADMIN_SEARCH_TIMEOUT_SECONDS, 10 by default: a text search over a million jobs takes ~1.
TOO_SLOW = (
    "The search took longer than {seconds:g} s and was stopped: narrow it with a "
    "status, task or time range (text alone reads every job)."
)


def _search_timeout() -> float:
    return get_settings().admin_search_timeout_seconds


def _too_slow() -> str:
    return TOO_SLOW.format(seconds=_search_timeout())


NAV = [
    ("overview", HOME, "Overview"),
    ("jobs", f"{UI}/jobs", "Jobs"),
    ("failed", f"{UI}/failed", "Failed"),
    ("deliveries", f"{UI}/deliveries", "Deliveries"),
    ("workers", f"{UI}/workers", "Workers"),
    ("periodic", f"{UI}/periodic", "Periodic"),
    ("schedules", f"{UI}/schedules", "Schedules"),
    ("exports", f"{UI}/exports", "Exports"),
    ("devices", f"{UI}/devices", "Devices"),
    ("audit", f"{UI}/audit", "Audit log"),
    ("attention", f"{UI}/attention", "Attention"),
]
REFRESH_SECONDS = 5
SECURITY_HEADERS = {
    # No script at all, styles from our own file only, forms post to ourselves only.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Redirect(Exception):
    def __init__(self, location: str):
        self.location = location


class PageError(DomainError):
    """A refusal of the dashboard's own (a form too large or cut short, a CSRF check, an unknown
    action), answered like any domain error."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class DashboardRoute(APIRoute):
    """Turns a Redirect into a 303 and every exception the JSON API answers (kiosk/http_errors.py:
    domain errors, a database outage) into the HTML error page with the same status, in this one
    place; adds the security headers to every answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except Redirect as exc:
                response = RedirectResponse(exc.location, status_code=303)
            except http_errors.KNOWN as exc:
                response = _error_page(request, http_errors.answer_for(exc))
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return handle


router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


def _key() -> bytes:
    return session.signing_key(get_settings().admin_token.get_secret_value())


def _fingerprint() -> bytes:
    return session.token_fingerprint(get_settings().admin_token.get_secret_value())


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def _current(request: Request) -> session.Session | None:
    """The request's live session: a cookie HMAC check, then one primary-key lookup."""
    session_id = session.cookie_id(_key(), request.cookies.get(session.COOKIE))
    if session_id is None:
        return None  # no cookie, a forged one or one of another admin token: no database work
    async with db.transaction() as conn:
        return await session.find(conn, _fingerprint(), session_id)


async def signed_in(request: Request) -> session.Session:
    """Dependency of every page: the session, or a redirect to the login form."""
    current = await _current(request)
    if current is None:
        # After signing in, come back to the page; a form's target is no page to come back to.
        back = _here(request) if request.method == "GET" else HOME
        raise Redirect(f"{LOGIN}?next={quote(back, safe='')}")
    request.state.dashboard_session = current  # for an error page, without a second lookup
    return current


async def _form(request: Request) -> dict[str, str]:
    """The posted form, never read past forms.MAX_BODY bytes: 413 beyond."""
    too_large = PageError(413, f"The form is too large (more than {forms.MAX_BODY // 1024} KiB).")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > forms.MAX_BODY:
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > forms.MAX_BODY:
                raise too_large
    except ClientDisconnect:  # gone mid-form: nobody reads the answer, and it is no server error
        raise PageError(400, "The form did not arrive whole.") from None
    return forms.parse_body(bytes(body))


async def posted(request: Request, sess: session.Session = Depends(signed_in)) -> dict[str, str]:
    """Dependency of every state-changing form: its fields, once the CSRF token checked out."""
    form = await _form(request)
    request.state.dashboard_back = session.safe_next(form.get("next"), HOME)
    if not session.csrf_ok(_key(), sess, form.get("csrf_token")):
        raise PageError(
            403,
            "This form has expired or did not come from the dashboard "
            "(CSRF token missing or wrong). Reload the page and try again.",
        )
    return form


def _secure(request: Request) -> bool:
    return session.cookie_secure(
        request.url.scheme,
        request.client.host if request.client else None,
        get_settings().dashboard_secure_cookie,
    )


def _operator(request: Request, sess: session.Session) -> audit.Operator:
    return audit.Operator(sess.actor, request.client.host if request.client else None)


def _page(
    request: Request,
    template: str,
    sess: session.Session | None,
    *,
    status: int = 200,
    active: str = "",
    title: str = "",
    **context: Any,
) -> HTMLResponse:
    flash_cookie = request.cookies.get(session.FLASH_COOKIE)
    flash = session.read_flash(_key(), flash_cookie)
    kind, _, message = (flash or "").partition(":")
    refresh = request.query_params.get("refresh") == "on"
    body = render(
        template,
        {
            "session": sess,
            "csrf": session.csrf_token(_key(), sess) if sess else "",
            "flash": {"kind": kind, "message": message} if flash else None,
            "nav": NAV,
            "active": active,
            "title": title,
            "here": _here(request),
            "path": request.url.path,
            "query": dict(request.query_params),
            "refresh": REFRESH_SECONDS if refresh else None,
            **context,
        },
    )
    response = HTMLResponse(body, status_code=status)
    if flash_cookie:
        response.delete_cookie(session.FLASH_COOKIE, path=session.COOKIE_PATH)
    return response


def _error_page(request: Request, answer: http_errors.Answer) -> HTMLResponse:
    # The session the page's dependency found, if it got that far: no database work here, which
    # may be what just failed.
    sess = getattr(request.state, "dashboard_session", None)
    # An action's form said where it came from: the way back, after reading why it was refused.
    back = getattr(request.state, "dashboard_back", HOME)
    response = _page(
        request,
        "error.html",
        sess,
        status=answer.status,
        title="Error",
        message=answer.detail,
        back=back,
    )
    response.headers.update(answer.headers)
    return response


def _flash(request: Request, response: Response, kind: str, message: str) -> Response:
    response.set_cookie(
        session.FLASH_COOKIE,
        session.sign_flash(_key(), f"{kind}:{message}"),
        max_age=60,
        path=session.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


def _back(
    request: Request, form: dict[str, str], default: str, kind: str, message: str
) -> Response:
    response = RedirectResponse(session.safe_next(form.get("next"), default), status_code=303)
    return _flash(request, response, kind, message)


# --- sign in and out ------------------------------------------------------------------------------


@router.get(LOGIN)
async def login_form(request: Request, next: str | None = None) -> Response:
    if await _current(request) is not None:
        raise Redirect(session.safe_next(next))
    return _page(
        request,
        "login.html",
        None,
        title="Sign in",
        next=session.safe_next(next),
        error=None,
        actor="",
    )


@router.post(LOGIN)
async def login(request: Request) -> Response:
    form = await _form(request)
    target = session.safe_next(form.get("next"))
    actor = audit.actor_name(form.get("operator"), default="")

    def again(status: int, error: str) -> Response:
        return _page(
            request,
            "login.html",
            None,
            status=status,
            title="Sign in",
            next=target,
            error=error,
            actor=actor,
        )

    if not token_matches(form.get("token") or None):
        logger.warning(
            "dashboard sign-in refused from %s",
            clip(request.client.host if request.client else "?"),
        )
        return again(401, "That is not the admin token.")
    secure = _secure(request)
    if (
        secure
        and request.url.scheme != "https"
        and not session.is_loopback(request.client.host if request.client else None)
    ):
        return again(
            400,
            "Open the dashboard over https: the session cookie is Secure, so a browser "
            "would drop it on plain http.",
        )
    lifetime = get_settings().dashboard_session_hours * 3600
    async with db.transaction() as conn:
        _, cookie = await session.start(
            conn,
            _key(),
            _fingerprint(),
            actor or "admin",
            lifetime,
            request.client.host if request.client else None,
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        session.COOKIE,
        cookie,
        max_age=int(lifetime),
        path=session.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    return response


@router.post(LOGOUT)
async def logout(
    request: Request,
    sess: session.Session = Depends(signed_in),
    form: dict[str, str] = Depends(posted),
) -> Response:
    """End this session on the server; with `everywhere=yes`, every dashboard session (audited)."""
    async with db.transaction() as conn:
        if form.get("everywhere") == "yes":
            ended = await session.end_all(conn)
            await audit.record_by(
                conn,
                _operator(request, sess),
                "dashboard.sign_out_everywhere",
                "dashboard_sessions",
                {"ended": ended},
            )
            message = f"Signed out everywhere ({ended} session{'s' if ended != 1 else ''} ended)."
        else:
            await session.end(conn, sess)
            message = "Signed out."
    response = RedirectResponse(LOGIN, status_code=303)
    response.delete_cookie(
        session.COOKIE,
        path=session.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return _flash(request, response, "ok", message)


# --- pages ----------------------------------------------------------------------------------------


@router.get(HOME)
async def overview(
    request: Request, window: str | None = None, sess: session.Session = Depends(signed_in)
) -> Response:
    minutes = int(window) if window and window.isdigit() else 60
    window_minutes = minutes if minutes in charts.WINDOWS else 60
    async with db.transaction() as conn:
        queue_views = await queues.list_queues(conn)
        series = await jobs.throughput_series(conn, window_minutes)
        workers = await jobs.list_workers(conn, stale_after=get_settings().worker_stale_seconds)
    graphs = [
        charts.bar_chart(series, "succeeded", window_minutes, "Succeeded"),
        charts.bar_chart(series, "failed", window_minutes, "Failed"),
    ]
    return _page(
        request,
        "overview.html",
        sess,
        active="overview",
        title="Overview",
        queues=queue_views,
        settings_actor=queues.SETTINGS_ACTOR,
        max_reason=queues.MAX_REASON,
        charts=graphs,
        window=window_minutes,
        windows=charts.WINDOWS,
        statuses=jobs.STATUSES,
        live_workers=sum(not w["stalled"] for w in workers),
        stalled_workers=sum(w["stalled"] for w in workers),
    )


@router.get(f"{UI}/jobs")
async def jobs_page(
    request: Request, before: str | None = None, sess: session.Session = Depends(signed_in)
) -> Response:
    flt, errors = forms.parse_filter(request.query_params)
    try:
        cursor = forms.parse_int(before, minimum=1)
    except ValueError:
        errors.append("before: a job id (ignored)")
        cursor = None
    async with db.transaction() as conn:
        queue_names, task_names = await jobs.queue_and_task_names(conn)
    try:
        async with db.transaction() as conn:
            await jobs.bound_statements(conn, _search_timeout())
            page = await jobs.list_jobs(conn, flt, before=cursor, limit=PAGE_SIZE)
    except psycopg.errors.QueryCanceled:
        page, errors = jobs.JobPage([], None), [*errors, _too_slow()]
    return _page(
        request,
        "jobs.html",
        sess,
        active="jobs",
        title="Jobs",
        page=page,
        flt=flt,
        params=forms.filter_params(flt),
        errors=errors,
        statuses=jobs.STATUSES,
        queue_names=queue_names,
        task_names=task_names,
        cursor=cursor,
    )


@router.get(f"{UI}/jobs/{{job_id}}")
async def job_page(
    request: Request, job_id: int, sess: session.Session = Depends(signed_in)
) -> Response:
    async with db.transaction() as conn:
        job = await jobs.get_job(conn, job_id)
    return _page(
        request,
        "job.html",
        sess,
        active="jobs",
        title=f"Job {job_id}",
        job=job,
        retryable=job["status"] in jobs.RETRYABLE,
        cancellable=job["status"] in jobs.CANCELLABLE,
        finished=job["status"] not in ("todo", "doing"),
    )


@router.get(f"{UI}/failed")
async def failed_page(
    request: Request, before: str | None = None, sess: session.Session = Depends(signed_in)
) -> Response:
    base, errors = forms.parse_filter(request.query_params)
    # Only queue, task and text narrow this page; the status is the page's own.
    base = jobs.JobFilter(queue=base.queue, task=base.task, text=base.text)
    failed = dataclasses.replace(base, status="failed")
    retrying = dataclasses.replace(base, status="todo", min_attempts=1)
    try:
        cursor = forms.parse_int(before, minimum=1)
    except ValueError:
        cursor = None
    async with db.transaction() as conn:
        queue_names, task_names = await jobs.queue_and_task_names(conn)
    try:
        async with db.transaction() as conn:
            await jobs.bound_statements(conn, _search_timeout())
            failed_page_ = await jobs.list_jobs(conn, failed, before=cursor, limit=PAGE_SIZE)
            retrying_page = await jobs.list_jobs(conn, retrying, limit=PAGE_SIZE)
            failed_count = await jobs.count_jobs(conn, failed)
            retrying_count = await jobs.count_jobs(conn, retrying)
            # One query for every listed job, not one per row.
            last_errors = await outcomes.last_errors(
                conn, [job["id"] for job in failed_page_.jobs + retrying_page.jobs]
            )
    except psycopg.errors.QueryCanceled:
        failed_page_ = retrying_page = jobs.JobPage([], None)
        failed_count = retrying_count = 0
        last_errors = {}
        errors = [*errors, _too_slow()]
    return _page(
        request,
        "failed.html",
        sess,
        active="failed",
        title="Failed jobs",
        errors=errors,
        flt_base=base,
        base_params=forms.filter_params(base),
        failed=failed_page_,
        retrying=retrying_page,
        failed_params=forms.filter_params(failed),
        retrying_params=forms.filter_params(retrying),
        failed_count=failed_count,
        retrying_count=retrying_count,
        cap=jobs.MAX_BULK,
        last_errors=last_errors,
        queue_names=queue_names,
        task_names=task_names,
        cursor=cursor,
    )


@router.get(f"{UI}/workers")
async def workers_page(request: Request, sess: session.Session = Depends(signed_in)) -> Response:
    stale_after = get_settings().worker_stale_seconds
    async with db.transaction() as conn:
        workers = await jobs.list_workers(conn, stale_after=stale_after)
    return _page(
        request,
        "workers.html",
        sess,
        active="workers",
        title="Workers",
        workers=workers,
        stale_after=stale_after,
    )


@router.get(f"{UI}/periodic")
async def periodic_page(request: Request, sess: session.Session = Depends(signed_in)) -> Response:
    async with db.transaction() as conn:
        tasks = await periodic.list_periodic(conn)
    return _page(
        request, "periodic.html", sess, active="periodic", title="Periodic tasks", tasks=tasks
    )


@router.get(f"{UI}/audit")
async def audit_page(
    request: Request, before: str | None = None, sess: session.Session = Depends(signed_in)
) -> Response:
    try:
        cursor = forms.parse_int(before, minimum=1)
    except ValueError:
        cursor = None
    async with db.transaction() as conn:
        entries = await audit.list_entries(conn, before=cursor, limit=PAGE_SIZE)
    next_cursor = entries[-1]["id"] if len(entries) == PAGE_SIZE else None
    return _page(
        request,
        "audit.html",
        sess,
        active="audit",
        title="Audit log",
        entries=entries,
        next_cursor=next_cursor,
        cursor=cursor,
    )


# --- actions: POST + CSRF, then back to the page with a message -----------------------------------


@router.post(f"{UI}/jobs/{{job_id}}/{{action}}")
async def job_action(
    request: Request,
    job_id: int,
    action: str,
    sess: session.Session = Depends(signed_in),
    form: dict[str, str] = Depends(posted),
) -> Response:
    operation = {"retry": actions.retry_job, "cancel": actions.cancel_job}.get(action)
    if operation is None:
        raise PageError(404, f"No such action: {action}.")
    default = f"{UI}/jobs/{job_id}"
    async with db.transaction() as conn:
        result = await operation(conn, job_id, _operator(request, sess))
    return _back(request, form, default, "ok", f"Job {job_id}: {result.replace('_', ' ')}.")


@router.post(f"{UI}/bulk/{{action}}")
async def bulk_action(
    request: Request,
    action: str,
    sess: session.Session = Depends(signed_in),
    form: dict[str, str] = Depends(posted),
) -> Response:
    if action not in ("retry", "cancel"):
        raise PageError(404, f"No such action: {action}.")
    flt, errors = forms.parse_filter(form)
    default = f"{UI}/jobs"
    if errors:
        return _back(request, form, default, "error", "; ".join(errors))
    if flt.is_empty():
        return _back(
            request,
            form,
            default,
            "error",
            "A bulk action needs a filter (status, queue, task, text or a time range).",
        )
    async with db.transaction() as conn:
        result = await actions.bulk(conn, action, flt, _operator(request, sess))
    verb = "retried" if action == "retry" else "cancelled"
    return _back(
        request,
        form,
        default,
        "ok",
        f"{len(result.changed)} of {result.matched} matching jobs {verb}"
        + (f"; {len(result.skipped)} skipped (their state changed)." if result.skipped else "."),
    )


@router.post(f"{UI}/periodic/{{name}}/run")
async def periodic_run(
    request: Request,
    name: str,
    sess: session.Session = Depends(signed_in),
    form: dict[str, str] = Depends(posted),
) -> Response:
    default = f"{UI}/periodic"
    async with db.transaction() as conn:
        job_id = await actions.run_periodic(conn, name, _operator(request, sess))
    if job_id is None:
        return _back(
            request, form, default, "error", f"A {name} job is already waiting (queueing lock)."
        )
    return _back(request, form, default, "ok", f"{name} deferred now as job {job_id}.")


@router.post(f"{UI}/queues/{{name}}/{{action}}")
async def queue_action(
    request: Request,
    name: str,
    action: str,
    sess: session.Session = Depends(signed_in),
    form: dict[str, str] = Depends(posted),
) -> Response:
    """Pause (with an optional reason), resume, or set the limits of a queue (overview cards)."""
    if action not in ("pause", "resume", "limits"):
        raise PageError(404, f"No such action: {action}.")  # an error page, not a form message
    by = _operator(request, sess)
    try:
        if action == "pause":
            async with db.transaction() as conn:
                await queues.pause(conn, name, form.get("reason"), by)
            message = f"Queue {name} paused: no new job of it starts; running ones finish."
        elif action == "resume":
            async with db.transaction() as conn:
                await queues.resume(conn, name, by)
            message = f"Queue {name} resumed."
        elif action == "limits":
            rate, running = forms.parse_limits(form)
            async with db.transaction() as conn:
                control = await queues.set_limits(conn, name, rate, running, by)
            message = (
                f"Queue {name}: at most {_limit(control.max_per_second)} starts per second, "
                f"{_limit(control.max_running)} running."
            )
    except (DomainError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, DomainError) else str(exc)
        return _back(request, form, HOME, "error", f"Queue {name}: {detail}")
    return _back(request, form, HOME, "ok", message)


def _limit(value: float | None) -> str:
    return "no limit of" if value is None else f"{value:g}"


# --- payments needing attention: unresolved charges, failed refunds ---------------------------


@router.get("/admin/attention")
async def attention_short() -> Response:
    """The page's short, easy to tell address; the page lives with the others under /admin/ui."""
    return RedirectResponse(f"{UI}/attention", status_code=303)


@router.get(f"{UI}/attention")
async def attention_page(request: Request, sess: session.Session = Depends(signed_in)) -> Response:
    items = await attention.list_attention()
    return _page(
        request,
        "attention.html",
        sess,
        active="attention",
        title="Payments needing attention",
        items=items,
        after=get_settings().payment_attention_after_seconds,
    )


@router.post(f"{UI}/attention/{{intent_id}}/{{action}}")
async def attention_action(
    request: Request,
    intent_id: uuid.UUID,
    action: str,
    sess: session.Session = Depends(signed_in),
    form: dict[str, str] = Depends(posted),
) -> Response:
    operation = {"resolve": attention.resolve_now, "refund": attention.retry_refund}.get(action)
    if operation is None:
        raise PageError(404, f"No such action: {action}.")
    default = f"{UI}/attention"
    await operation(intent_id, _operator(request, sess))
    done = "resolution deferred" if action == "resolve" else "refund asked again"
    return _back(request, form, default, "ok", f"Payment intent {intent_id}: {done}.")


# --- schedules: list, history, run now ------------------------------------------------------------


@router.get(f"{UI}/schedules")
async def schedules_page(
    request: Request, cursor: str | None = None, sess: session.Session = Depends(signed_in)
) -> Response:
    errors: list[str] = []
    try:
        page = await schedules.list_page(limit=PAGE_SIZE, cursor=cursor or None)
    except InvalidSchedule:
        errors.append("cursor: not a page of this list (ignored)")
        cursor, page = None, await schedules.list_page(limit=PAGE_SIZE)
    return _page(
        request,
        "schedules.html",
        sess,
        active="schedules",
        title="Schedules",
        schedules=page.views,
        next_cursor=page.next_cursor,
        cursor=cursor,
        errors=errors,
    )


@router.get(f"{UI}/schedules/{{schedule_id}}")
async def schedule_page(
    request: Request,
    schedule_id: int,
    cursor: str | None = None,
    sess: session.Session = Depends(signed_in),
) -> Response:
    errors: list[str] = []
    view = await schedules.get(schedule_id)
    try:
        history = await schedules.history(schedule_id, limit=PAGE_SIZE, cursor=cursor or None)
    except InvalidSchedule:
        errors.append("cursor: not a page of this history (ignored)")
        cursor, history = None, await schedules.history(schedule_id, limit=PAGE_SIZE)
    return _page(
        request,
        "schedule.html",
        sess,
        active="schedules",
        title=f"Schedule {view.schedule.name}",
        view=view,
        headers=view.schedule.shown_headers,
        history=history,
        cursor=cursor,
        errors=errors,
    )


@router.post(f"{UI}/schedules/{{schedule_id}}/run")
async def schedule_run(
    request: Request,
    schedule_id: int,
    sess: session.Session = Depends(signed_in),
    form: dict[str, str] = Depends(posted),
) -> Response:
    default = f"{UI}/schedules/{schedule_id}"
    run, _ = await schedules.run_now(schedule_id, by=_operator(request, sess))
    return _back(request, form, default, "ok", f"Run {run.id} queued as job {run.job_id}.")


# --- exports: request, watch, download ------------------------------------------------------------


@router.get(f"{UI}/exports")
async def exports_page(
    request: Request, before: str | None = None, sess: session.Session = Depends(signed_in)
) -> Response:
    async with db.transaction() as conn:
        try:
            page = await exports.list_exports(conn, cursor=before, limit=PAGE_SIZE)
        except exports.InvalidCursor:
            before, page = None, await exports.list_exports(conn, limit=PAGE_SIZE)
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return _page(
        request,
        "exports.html",
        sess,
        active="exports",
        title="Exports",
        exports=page.exports,
        next_cursor=page.next_cursor,
        cursor=before,
        keep=get_settings().export_keep,
        retain_days=get_settings().retain_exports_days,
        default_from=f"{today - dt.timedelta(days=7):%Y-%m-%dT%H:%M}",
        default_to=f"{today + dt.timedelta(days=1):%Y-%m-%dT%H:%M}",
    )


@router.post(f"{UI}/exports")
async def export_create(
    request: Request,
    sess: session.Session = Depends(signed_in),
    form: dict[str, str] = Depends(posted),
) -> Response:
    default = f"{UI}/exports"
    try:
        created_from, created_to = (
            forms.parse_time(form.get("from", "")),
            forms.parse_time(form.get("to", "")),
        )
    except ValueError as exc:  # the form's own fields, before any domain rule: back to the form
        return _back(request, form, default, "error", f"Cannot export: {exc}")
    async with db.transaction() as conn:
        export = await exports.request_by(conn, created_from, created_to, _operator(request, sess))
    return _back(request, form, default, "ok", f"Export started as job {export['job_id']}.")


@router.get(f"{UI}/exports/{{export_id}}/download")
async def export_download(
    export_id: uuid.UUID, sess: session.Session = Depends(signed_in)
) -> Response:
    async with db.transaction() as conn:
        file = await exports.download(conn, export_id)
    return csv_response(file)


# --- devices: list, create (the token shown once), revoke -----------------------------------------


async def _devices_page(
    request: Request,
    sess: session.Session,
    *,
    new: devices.NewDevice | None = None,
    form: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
    cursor: int | None = None,
) -> Response:
    page = await devices.list_page(cursor=cursor, limit=PAGE_SIZE)
    next_cursor = page[-1].id if len(page) == PAGE_SIZE else None
    return _page(
        request,
        "devices.html",
        sess,
        status=status,
        active="devices",
        title="Devices",
        devices=page,
        next_cursor=next_cursor,
        cursor=cursor,
        new=new,
        form=form or {},
        error=error,
    )


@router.get(f"{UI}/devices")
async def devices_page(
    request: Request, before: str | None = None, sess: session.Session = Depends(signed_in)
) -> Response:
    try:
        cursor = forms.parse_int(before, minimum=1)
    except ValueError:
        cursor = None
    return await _devices_page(request, sess, cursor=cursor)


@router.post(f"{UI}/devices")
async def device_create(
    request: Request,
    sess: session.Session = Depends(signed_in),
    form: dict[str, str] = Depends(posted),
) -> Response:
    """Answered with the page itself, not a redirect: the token is in this answer only (never in
    a cookie or a URL), and `Cache-Control: no-store` keeps it out of the browser's cache."""
    terminals = [t for t in form.get("terminal_ids", "").replace(",", " ").split() if t]
    try:
        new = await devices.create(form.get("name", ""), terminals, _operator(request, sess))
    except DomainError as exc:  # Invalid or Conflict: shown above the form, which keeps its values
        return await _devices_page(request, sess, form=form, error=exc.detail, status=exc.status)
    return await _devices_page(request, sess, new=new, status=201)


@router.post(f"{UI}/devices/{{device_id}}/revoke")
async def device_revoke(
    request: Request,
    device_id: int,
    sess: session.Session = Depends(signed_in),
    form: dict[str, str] = Depends(posted),
) -> Response:
    default = f"{UI}/devices"
    if form.get("confirm") != "yes":
        return _back(request, form, default, "error", "Tick the box to confirm the revocation.")
    device = await devices.revoke(device_id, _operator(request, sess))
    return _back(
        request,
        form,
        default,
        "ok",
        f"Device {device.name} revoked: its token is refused from now on.",
    )


# --- deliveries: receipts and hooks not delivered, resend -----------------------------------------


@router.get(f"{UI}/deliveries")
async def deliveries_page(
    request: Request,
    state: str | None = None,
    kind: str | None = None,
    before: str | None = None,
    sess: session.Session = Depends(signed_in),
) -> Response:
    errors = []
    if state and state not in deliveries.STATES:
        errors.append(f"state: one of {', '.join(deliveries.STATES)} (ignored)")
    if kind and kind not in deliveries.KINDS:
        errors.append(f"kind: one of {', '.join(deliveries.KINDS)} (ignored)")
    state = state if state in deliveries.STATES else None
    kind = kind if kind in deliveries.KINDS else None
    try:
        cursor = forms.parse_int(before, minimum=1)
    except ValueError:
        cursor = None
    async with db.transaction() as conn:
        page = await deliveries.list_deliveries(
            conn, state=state, kind=kind, before=cursor, limit=PAGE_SIZE
        )
    settings = get_settings()
    return _page(
        request,
        "deliveries.html",
        sess,
        active="deliveries",
        title="Deliveries",
        page=page,
        state=state,
        kind=kind,
        states=deliveries.STATES,
        kinds=deliveries.KINDS,
        errors=errors,
        params={"state": state, "kind": kind},
        cursor=cursor,
        max_attempts=settings.delivery_max_attempts,
        max_age=settings.delivery_max_age_seconds,
    )


@router.post(f"{UI}/deliveries/{{order_id}}/{{kind}}/resend")
async def delivery_resend(
    request: Request,
    order_id: uuid.UUID,
    kind: str,
    sess: session.Session = Depends(signed_in),
    form: dict[str, str] = Depends(posted),
) -> Response:
    default = f"{UI}/deliveries"
    if kind not in deliveries.KINDS:
        return _back(request, form, default, "error", f"No such delivery kind: {kind}.")
    async with db.transaction() as conn:
        result = await deliveries.resend_by(conn, order_id, kind, _operator(request, sess))
    return _back(
        request,
        form,
        default,
        "ok",
        f"The {kind} of order {order_id} is owed again (job {result['job_id']}).",
    )


# --- the stylesheet -------------------------------------------------------------------------------

STATIC_PATH = f"{UI}/static"


class StaticAssets(StaticFiles):
    """The package's static/ folder (the stylesheet), mounted at STATIC_PATH by the app: Starlette
    serves it with validators (ETag, Last-Modified, then 304), cached five minutes, and with the
    dashboard's security headers like every page."""

    def __init__(self) -> None:
        super().__init__(packages=[("kiosk.dashboard", "static")])

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "public, max-age=300"
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
