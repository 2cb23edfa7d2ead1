"""Cloud Functions entry points: decode the request or event, call the service, encode the reply.

No SDK is imported here; ``orchestrator.wiring`` builds clients lazily for the path taken.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from orchestrator import http, logs, wiring

logs.setup()


@functions_framework.http
def start_export(request: Any) -> http.Reply:
    """Daily, from Cloud Scheduler (OIDC): create the slot's run and start its export."""

    def act() -> Any:
        body = http.json_body(request, {"slot"})
        run = wiring.get().service.start_export(http.scheduled_slot(request, body))
        return {"run": run}

    return http.handle(act)


@functions_framework.http
def poll(request: Any) -> http.Reply:
    """Every few minutes, from Cloud Scheduler (OIDC): advance every open run by one step."""

    def act() -> Any:
        http.json_body(request, set())
        return wiring.get().service.poll()

    return http.handle(act)
