"""Cloud Functions entry points: decode the request or event, call the service, encode the reply.

No SDK is imported here; ``orchestrator.wiring`` builds clients lazily for the path taken.
"""

from __future__ import annotations

import logging
from typing import Any

import functions_framework

from orchestrator import logs, wiring
from orchestrator.faces import http

logs.setup()


@functions_framework.http
def start_export(request: Any) -> http.Reply:
    """Daily, from Cloud Scheduler (OIDC): create the slot's run and start its export."""

    def act() -> Any:
        body = http.json_body(request, {"slot"})
        w = wiring.get()
        run = w.service.start_export(http.scheduled_slot(request, body))
        return {"run": w.status.view(run)}  # the view `status` returns, not the ledger record

    return http.handle(act)


@functions_framework.http
def poll(request: Any) -> http.Reply:
    """Every few minutes, from Cloud Scheduler (OIDC): advance every open run by one step."""

    def act() -> Any:
        http.json_body(request, set())
        return wiring.get().service.poll()

    return http.handle(act)


@functions_framework.cloud_event
def notify(cloud_event: Any) -> None:
    """Each message on the notification topic: DTS run-finished, or one of our events.

    Returns normally for anything handled or permanently unhandleable (acknowledged); raises only
    for transient faults, so that the platform retries."""
    from orchestrator.core.notifications import MalformedMessageError, message_from_push

    try:
        message = message_from_push(cloud_event.data)
    except MalformedMessageError as exc:
        logging.getLogger("main").warning("dropped an undecodable event: %s", exc.reason)
        return
    wiring.get().notify_service.handle(message)


@functions_framework.http
def rerun(request: Any) -> http.Reply:
    """Operator (IAM): re-transfer tables of a run from its export, or re-export (as of a day)."""
    from orchestrator.app.rerun_request import RERUN_FIELDS, RerunRequest

    def act() -> Any:
        body = RerunRequest.from_body(http.json_body(request, set(RERUN_FIELDS)))
        return wiring.get().reruns.rerun(body)

    return http.handle(act)


@functions_framework.http
def status(request: Any) -> http.Reply:
    """Operator (IAM): GET ?run_id=... for one run with its tables, or the recent runs."""
    return http.handle(
        lambda: wiring.get().status.query(http.query_params(request, {"run_id", "limit"}))
    )
