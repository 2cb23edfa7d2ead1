"""One cold interpreter under ``python -X importtime``: an entry point's path, or a set of imports.

Run by ``bench.coldstart`` as ``python -X importtime bench/_coldstart_child.py SPEC_JSON``. Before
the ``@@START`` marker only the standard library and functions_framework are loaded, and the
framework has served two stub requests (the Cloud Functions runtime has loaded functions_framework,
and its per-request code, before it loads ``main.py``). Between ``@@START`` and ``@@END``:

- ``kind: "path"``: the function is loaded from ``main.py`` with ``functions_framework.create_app``
  and (unless ``call`` is false) called once through the framework's test client, so every import
  its path makes, at module level or lazily, is logged between the markers;
- ``kind: "imports"``: ``main.py`` is loaded if ``source`` is given (the eager baseline), then each
  module of ``modules`` is imported (the SDKs alone, or every SDK).

Network waits are not imports and do not count. After ``@@END`` the child reports which SDKs are
loaded and its peak RSS (``VmHWM``).

This file is a script, not a module of the ``bench`` package, so that nothing of the harness is
imported into the measured process.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

# What the bench calls an SDK, and the module whose presence in sys.modules says it was loaded.
SDKS = {
    "boto3": "boto3",
    "botocore": "botocore",
    "grpc": "grpc",
    "firestore": "google.cloud.firestore_v1",
    "pubsub": "google.cloud.pubsub_v1",
    "dts": "google.cloud.bigquery_datatransfer_v1",
    "bigquery": "google.cloud.bigquery",
    "secretmanager": "google.cloud.secretmanager_v1",
    "id token": "google.oauth2.id_token",
}
CLOUD_EVENT_HEADERS = {
    "ce-id": "warm-up",
    "ce-specversion": "1.0",
    "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
    "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
}


def marker(text: str) -> None:
    sys.stderr.flush()
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    spec = json.loads(sys.argv[1])
    import functions_framework

    create_app: Any = functions_framework.create_app  # untyped upstream
    stub = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_platform_stub.py")
    create_app("http_stub", stub, "http").test_client().post("/", json={})
    create_app("event_stub", stub, "cloudevent").test_client().post(
        "/", json={"message": {}}, headers=CLOUD_EVENT_HEADERS
    )
    status, body = 0, ""
    marker("@@START")
    if spec["kind"] == "imports":
        if spec.get("source"):
            create_app(spec["target"], spec["source"], "http")
        for name in spec["modules"]:
            importlib.import_module(name)
    else:
        app = create_app(spec["target"], spec["source"], spec["signature"])
        if spec.get("call", True):
            response = app.test_client().open(
                "/",
                method=spec.get("method", "POST"),
                json=spec.get("json"),
                headers=spec.get("headers") or {},
            )
            status, body = response.status_code, response.get_data(as_text=True)[:4000]
    marker("@@END")
    result = {
        "status": status,
        "body": body,
        "sdks": {name: module in sys.modules for name, module in SDKS.items()},
        "peak_rss_mib": peak_rss_mib(),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
