"""The command line: ``python -m devstack.dts --port N ...`` serves a stand-in until SIGTERM or
SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from devstack.dts.standin import start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.dts",
        description="Local BigQuery DTS stand-in (REST API v1).",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--s3-endpoint", default=None, help="moto server URL")
    parser.add_argument("--s3-region", default="us-east-1")
    parser.add_argument("--pubsub-host", default=None, help="Pub/Sub emulator host:port")
    parser.add_argument(
        "--finish-delay", default="2", help="seconds before a run finishes on its own, or 'manual'"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    parser.add_argument(
        "--bigquery-port",
        type=int,
        default=None,
        help="also serve the BigQuery REST stand-in on this port (the runs load into it)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    delay = None if args.finish_delay == "manual" else float(args.finish_delay)
    bigquery = None
    if args.bigquery_port is not None:  # the runs load into it
        from devstack.bigquery_standin import start_bigquery

        bigquery = start_bigquery(args.bigquery_port)
        print(f"BigQuery stand-in listening on {bigquery.endpoint}", flush=True)
    standin = start(
        args.port,
        args.s3_endpoint,
        args.pubsub_host,
        finish_delay=delay,
        s3_region=args.s3_region,
        bigquery=bigquery,
    )
    standin.faults.latency = args.latency
    print(f"DTS stand-in listening on {standin.target}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    standin.stop()
    if bigquery is not None:
        bigquery.stop()
    return 0
