"""Manual reruns: re-transfer tables of a run from its export, or re-export (as of a day).

- **Re-transfer** (``mode: transfer``, the default when a ``run_id`` is named): new DTS runs for the
  named tables, or for every failed one, with ``requested_run_time`` = the run's ORIGINAL run time,
  so each config's ``data_path`` template resolves to that run's export. No new export; the
  export's files must still be in S3. The tables go back to STARTED (attempts + 1) and the run
  back to TRANSFERRING: notify closes it again and posts a new summary. Of the failed tables,
  an EMPTY one whose export folder holds no data file is skipped, with the re-export that loads
  it (the same export would load the same nothing); named, or when it is all there is, it is
  refused (409).
- **Re-export** (``mode: export``, implied by ``as_of``): a new run whose run time is the minute it
  was asked for at second 01 (``model.reexport_run_time``: so a new export id, never a daily
  run's), for every table, the named ones, or a run's failed ones;
  with ``as_of`` it exports the retained automated snapshot of that day, a day in the configured
  time zone (``RDS2BQ_TIMEZONE``): the day people mean when they type one.

Every request is checked in full before anything changes, and refused with its reason: unknown
table (400), unknown run (404), export files gone (409), a conflicting run in flight (409), five
exports running (503), no retained snapshot of that day (404). ``dry_run`` runs every check and
changes nothing. Repeats start nothing twice: a re-transfer refuses tables already started, a
re-export asked twice in one minute is the same run (and another while the first is exporting is
refused), and a ``request_id`` makes any repeat return the first answer.

No SDK import: everything goes through the ports, like the service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from orchestrator.app import outbox
from orchestrator.app.exports import Exports, require_export_slot
from orchestrator.app.ports import Clock, EventBus, Exporter, Ledger, TransferRunner
from orchestrator.app.rerun_checks import (
    check_transferable,
    export_keys,
    newer_loads,
    no_data_file,
    runs_in_the_way,
    table_refusal,
    transfer_keys,
)
from orchestrator.app.rerun_request import Mode, RerunRequest, RerunResult, TableOutcome
from orchestrator.app.transfers import TransferRuns, close_if_done
from orchestrator.config import Settings
from orchestrator.core import machine
from orchestrator.core.errors import (
    BadRequestError,
    ConflictError,
    ExportFilesGoneError,
    NotFoundError,
    PermanentError,
    Rds2bqError,
    TransferConfigMissingError,
    TransientError,
)
from orchestrator.core.keys import export_task_id, reexport_run_time, rerun_request_key, run_id_for
from orchestrator.core.model import Run, RunState, TableRun, TableState, Transition

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the service


class Reruns:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        exporter: Callable[[], Exporter],
        transfers: Callable[[], TransferRunner],
        events: EventBus,
        clock: Clock,
        runs: TransferRuns,
    ) -> None:
        # The daily service's ports; ``runs`` starts the DTS runs (the wiring shares one).
        self.settings = settings
        self.ledger = ledger
        self._exporter = exporter
        self._transfers = transfers
        self.events = events
        self.clock = clock
        self.runs = runs

    def rerun(self, request: RerunRequest) -> RerunResult:
        now = self.clock.now()
        if request.request_id and not request.dry_run:
            return self._once(request, now)
        return self._dispatch(request, now)

    def _dispatch(self, request: RerunRequest, now: datetime) -> RerunResult:
        if request.mode is Mode.TRANSFER:
            return self._retransfer(request, now)
        return self._reexport(request, now)

    # ------------------------------------------------------------------ idempotency key

    def _once(self, request: RerunRequest, now: datetime) -> RerunResult:
        key = rerun_request_key(request.request_id)
        target = (
            request.run_id if request.mode is Mode.TRANSFER else run_id_for(reexport_run_time(now))
        )
        fingerprint = request.fingerprint()
        stored, created = self.ledger.remember(key, f"{target}|{fingerprint}", now)
        if not created:
            target, _, stored_fingerprint = stored.partition("|")
            if stored_fingerprint != fingerprint:
                raise ConflictError(
                    f"request_id {request.request_id!r} was already used for a different request"
                )
            return self._repeated(request, target)
        try:
            return self._dispatch(request, now)
        except BaseException:
            self.ledger.forget(key)  # nothing happened: the same request_id may be tried again
            raise

    def _repeated(self, request: RerunRequest, run_id: str) -> RerunResult:
        run = self.ledger.get_run(run_id)
        docs = {t.key: t for t in self.ledger.tables(run_id)} if run else {}
        keys = request.tables or (run.tables if run else ())
        if request.failed:  # the tables it re-transferred: rerun, or not loaded
            keys = tuple(
                k
                for k in keys
                if k in docs and (docs[k].attempts > 1 or docs[k].state is not TableState.SUCCEEDED)
            )
        outcomes = tuple(
            TableOutcome(
                k,
                "requested",
                docs[k].state.value if k in docs else "",
                docs[k].dts_run if k in docs else "",
            )
            for k in keys
        )
        return RerunResult(
            mode=request.mode,
            run_id=run_id,
            dry_run=False,
            message=(
                f"request {request.request_id!r} was already handled (run {run_id}): "
                "nothing new was started"
            ),
            tables=outcomes,
            state=run.state.value if run else "",
            parent_run_id=run.parent_run_id if run else "",
            export_task_id=run.export_task_id if run else "",
            repeated=True,
        )

    # ------------------------------------------------------------------ re-transfer

    def _retransfer(self, request: RerunRequest, now: datetime) -> RerunResult:
        run = self._run(request.run_id)
        check_transferable(run)
        unloadable = machine.unloadable_export(run, self.settings.env)
        if unloadable:
            raise ConflictError(
                f"run {run.run_id} cannot be re-transferred: {unloadable} "
                f'("mode": "export", "run_id": "{run.run_id}")'
            )
        docs = {t.key: t for t in self.ledger.tables(run.run_id)}
        keys = transfer_keys(self.settings, request, run, docs)
        if not keys:
            return RerunResult(
                mode=Mode.TRANSFER,
                run_id=run.run_id,
                dry_run=request.dry_run,
                message=f"run {run.run_id} has no failed table: nothing to re-transfer",
                state=run.state.value,
                export_task_id=run.export_task_id,
            )
        refs = {t.key: t for t in self.settings.tables}
        exporters: list[Exporter] = []  # built at the first look into S3, not for a refusal

        def present(key: str) -> bool:
            if not exporters:
                exporters.append(self._exporter())
            return exporters[0].export_files_present(run.export_task_id, refs[key].export_dir)

        # An EMPTY load whose export folder holds no data file: the export wrote none for it, so
        # a re-transfer would load the same nothing. Of a run's failed tables, it is skipped
        # (the others are reloaded); named, or when it is all there is, it is refused.
        no_data = [
            k
            for k in keys
            if k in refs
            and (t := docs.get(k)) is not None
            and t.state is TableState.EMPTY
            and not present(k)
        ]
        if no_data and not request.failed:
            raise ExportFilesGoneError(
                f"re-transfer refused: {no_data_file(run, no_data)}"
                + ("; or name only the other tables" if len(no_data) < len(keys) else "")
            )
        if no_data and len(no_data) == len(keys):
            raise ExportFilesGoneError(
                f"nothing to re-transfer in run {run.run_id}: {no_data_file(run, no_data)}"
            )
        keys = [k for k in keys if k not in no_data]
        skipped = tuple(
            TableOutcome(k, "skipped", "the export wrote no data file for it: re-export it")
            for k in no_data
        )
        notes = (f"skipped: {no_data_file(run, no_data)}",) if no_data else ()
        stale_after = timedelta(seconds=self.settings.lease_seconds)
        refusals = [r for k in keys if (r := table_refusal(k, docs.get(k), now, stale_after))]
        refusals += runs_in_the_way(self.ledger, run, keys)
        if not request.force:
            refusals += newer_loads(self.ledger, run, keys)
        if refusals:
            raise ConflictError("re-transfer refused: " + "; ".join(refusals))
        configs = self._transfers().configs_by_table()
        missing = [k for k in keys if k not in configs]
        if missing:
            raise TransferConfigMissingError(
                f"no transfer config for {', '.join(missing)}: run `python -m orchestrator sync`"
            )
        gone = [k for k in keys if not present(k)]
        if gone:
            raise ExportFilesGoneError(
                f"the files of {', '.join(gone)} are no longer in export {run.export_task_id} "
                f"(s3://{self.settings.s3_bucket}/{self.settings.s3_prefix}/...): re-export "
                f'instead ("mode": "export", "run_id": "{run.run_id}")'
            )
        if request.dry_run:
            also = f", and skip {len(skipped)} table(s) (see the note)" if skipped else ""
            return RerunResult(
                mode=Mode.TRANSFER,
                run_id=run.run_id,
                dry_run=True,
                message=(
                    f"would start {len(keys)} DTS run(s) from export {run.export_task_id} "
                    f"(requested_run_time {run.run_time.isoformat()}), no new export{also}; "
                    f"run {run.run_id} would be {RunState.TRANSFERRING.value} again"
                ),
                tables=(
                    *(TableOutcome(k, "would-start", f"config {configs[k].name}") for k in keys),
                    *skipped,
                ),
                state=run.state.value,
                export_task_id=run.export_task_id,
                notes=notes,
            )
        claims = self._claim(run, keys, {k: configs[k].name for k in keys}, now)
        workers = max(1, min(self.settings.fanout_concurrency, len(claims)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(lambda c: self._start_one(run, *c), claims))
        return self._after_start(run, outcomes, skipped, notes)

    def _run(self, run_id: str) -> Run:
        run = self.ledger.get_run(run_id)
        if run is None:
            raise NotFoundError(f"run {run_id} is not in the ledger")
        return run

    def _claim(
        self, run: Run, keys: Sequence[str], config_names: Mapping[str, str], now: datetime
    ) -> list[tuple[TableRun, TableRun]]:
        """Claim every table (compare-and-set): (the table before, the claim). All or none."""
        stale_after = timedelta(seconds=self.settings.lease_seconds)
        claims: list[tuple[TableRun, TableRun]] = []
        for key in keys:
            seen: list[TableRun] = []

            def claim(
                table: TableRun, key: str = key, seen: list[TableRun] = seen
            ) -> TableRun | None:
                seen.append(table)
                return machine.claim_retransfer(table, config_names[key], now, stale_after)

            claimed = self.ledger.update_table(run.run_id, key, claim)
            if claimed is None:
                for previous, taken in claims:
                    self._release(run, previous, taken)
                raise ConflictError(
                    f"{key} was claimed by another re-transfer a moment ago: see "
                    f"`python -m orchestrator status {run.run_id}`"
                )
            claims.append((seen[-1], claimed))
        log.info(
            "run %s: re-transfer of %s claimed",
            run.run_id,
            ", ".join(keys),
            extra={"run_id": run.run_id},
        )
        return claims

    def _release(self, run: Run, previous: TableRun, claim: TableRun) -> None:
        claimed_at = claim.started_at
        if claimed_at is None:  # pragma: no cover - a claim always has its time
            return
        self.ledger.update_table(
            run.run_id, claim.key, lambda t: machine.release_retransfer(t, claimed_at, previous)
        )

    def _start_one(self, run: Run, previous: TableRun, claim: TableRun) -> TableOutcome:
        claimed_at = claim.started_at
        assert claimed_at is not None  # set by claim_retransfer
        try:
            name = self.runs.start(claim.dts_config, run.run_time, earlier=previous.dts_run).name
        except TransientError as exc:
            self._release(run, previous, claim)
            log.warning(
                "run %s: %s not re-transferred (transient: %s)",
                run.run_id,
                claim.key,
                exc,
                extra={"run_id": run.run_id},
            )
            return TableOutcome(
                claim.key, "not-started", f"DTS unavailable, nothing started: {exc}; try again"
            )
        except PermanentError as exc:
            reason = f"DTS refused the re-transfer: {exc}"
            self.ledger.update_table(
                run.run_id,
                claim.key,
                lambda t: machine.retransfer_refused(t, claimed_at, reason, self.clock.now()),
            )
            return TableOutcome(claim.key, "refused-by-dts", reason)
        self.ledger.update_table(
            run.run_id,
            claim.key,
            lambda t: machine.retransfer_started(t, claimed_at, name, self.clock.now()),
        )
        log.info(
            "run %s: %s re-transferred as %s",
            run.run_id,
            claim.key,
            name,
            extra={"run_id": run.run_id},
        )
        return TableOutcome(claim.key, "started", dts_run=name)

    def _after_start(
        self,
        run: Run,
        outcomes: Sequence[TableOutcome],
        skipped: Sequence[TableOutcome] = (),
        notes: Sequence[str] = (),
    ) -> RerunResult:
        started = [o for o in outcomes if o.action == "started"]
        if not started:
            reasons = "; ".join(f"{o.table}: {o.detail}" for o in (*outcomes, *skipped))
            if any(o.action == "refused-by-dts" for o in outcomes):
                raise PermanentError(f"nothing re-transferred: {reasons}")
            raise TransientError(f"nothing re-transferred: {reasons}")
        # Reopen so that notify closes the run again; then close it at once if every started run
        # has already finished (its notification may have come before the reopen).
        self._transition(run.run_id, lambda r: machine.reopen(r, self.clock.now()))
        close_if_done(self.ledger, self.events, run.run_id, self.clock.now())
        current = self.ledger.get_run(run.run_id) or run
        also = f", {len(skipped)} skipped (see the note)" if skipped else ""
        message = (
            f"{len(started)} of {len(outcomes) + len(skipped)} table(s) of run {run.run_id} "
            f"re-transferred from export {run.export_task_id} (no new export){also}; the run is "
            f"{current.state.value} and closes again, with a new summary, when they finish"
        )
        return RerunResult(
            mode=Mode.TRANSFER,
            run_id=run.run_id,
            dry_run=False,
            message=message,
            tables=(*outcomes, *skipped),
            state=current.state.value,
            parent_run_id=run.parent_run_id,
            export_task_id=run.export_task_id,
            source_arn=run.source_arn,
            snapshot_time=run.snapshot_time,
            notes=tuple(notes),
        )

    # ------------------------------------------------------------------ re-export

    def _reexport(self, request: RerunRequest, now: datetime) -> RerunResult:
        parent = self._run(request.run_id) if request.run_id else None
        keys, notes = export_keys(self.settings, self.ledger, request, parent)
        if not keys:
            return RerunResult(
                mode=Mode.EXPORT,
                run_id=request.run_id,
                dry_run=request.dry_run,
                message=f"run {request.run_id} has no failed table: nothing to re-export",
                notes=tuple(notes),
            )
        tz = self.settings.timezone
        # A day people type is a day where they are: the configured time zone, said back to them.
        if request.as_of is not None and request.as_of > now.astimezone(tz).date():
            raise BadRequestError(
                f"as_of {request.as_of.isoformat()} is in the future ({tz.key}: today is "
                f"{now.astimezone(tz).date().isoformat()})"
            )
        run_time = reexport_run_time(now)
        existing = self.ledger.get_run(run_id_for(run_time))
        if existing is not None:
            repeated = self._repeat_of(existing, request, keys)
            if repeated is not None:
                return repeated
        refusals = runs_in_the_way(self.ledger, None, keys)
        if refusals:
            raise ConflictError("re-export refused: " + "; ".join(refusals))
        s = self.settings
        exporter = self._exporter()
        source = exporter.resolve_source(s.source_kind, s.source_id, request.as_of, tz)
        require_export_slot(exporter, ": try again when one has finished")
        if existing is not None:  # the minute, and so the run id, is taken by another run
            raise ConflictError(
                f"run {existing.run_id} ({existing.kind}) was started this minute for another "
                "request, and a re-export is identified by its minute: ask again in a minute"
            )
        task_id = export_task_id(s.env, run_time)
        as_of_text = (
            f" as of {_local(source.snapshot_time, tz)}" if source.snapshot_time else " (live)"
        )
        if request.dry_run:
            return RerunResult(
                mode=Mode.EXPORT,
                run_id=run_id_for(run_time),
                dry_run=True,
                message=(
                    f"would start export {task_id} of {len(keys)} table(s) from {source.arn}"
                    f"{as_of_text} as run {run_id_for(run_time)}; once it completes, its loads "
                    "replace these tables' contents"
                ),
                tables=tuple(TableOutcome(k, "would-export") for k in keys),
                parent_run_id=request.run_id,
                export_task_id=task_id,
                source_arn=source.arn,
                snapshot_time=source.snapshot_time,
                notes=tuple(notes),
            )
        try:
            run = Exports(s, self.ledger, self._exporter, self.events, self.clock).start(
                run_time,
                kind="rerun",
                tables=keys,
                as_of=request.as_of,
                parent_run_id=request.run_id,
            )
        except TransientError as exc:
            self._cancel_unstarted(run_time, request.as_of, exc)
            raise
        log.info(
            "run %s: re-export of %d table(s) started (%s)",
            run.run_id,
            len(keys),
            task_id,
            extra={"run_id": run.run_id},
        )
        return RerunResult(
            mode=Mode.EXPORT,
            run_id=run.run_id,
            dry_run=False,
            message=(
                f"export {run.export_task_id} of {len(keys)} table(s) started as run "
                f"{run.run_id}{as_of_text}; poll hands it off when it completes"
            ),
            tables=tuple(TableOutcome(k, "exporting") for k in keys),
            state=run.state.value,
            parent_run_id=run.parent_run_id,
            export_task_id=run.export_task_id,
            source_arn=run.source_arn or source.arn,
            snapshot_time=run.snapshot_time or source.snapshot_time,
            notes=tuple(notes),
        )

    def _repeat_of(
        self, existing: Run, request: RerunRequest, keys: Sequence[str]
    ) -> RerunResult | None:
        """The answer to a repeat of the request that started ``existing`` this minute; None if
        ``existing`` is another request's run."""
        same_day = (
            request.as_of is None
            or existing.snapshot_time is None
            or existing.snapshot_time.astimezone(self.settings.timezone).date() == request.as_of
        )
        same = (
            existing.kind == "rerun"
            and tuple(existing.tables) == tuple(keys)
            and existing.parent_run_id == request.run_id
            and same_day
        )
        if not same:
            return None
        if existing.state is RunState.CANCELED and existing.export_started_at is None:
            raise TransientError(
                f"a re-export asked this minute could not start ({existing.failure_cause}): "
                "ask again in a minute"
            )
        return RerunResult(
            mode=Mode.EXPORT,
            run_id=existing.run_id,
            dry_run=request.dry_run,
            message=f"already started this minute as run {existing.run_id}: nothing new started",
            tables=tuple(TableOutcome(k, "exporting") for k in keys),
            state=existing.state.value,
            parent_run_id=existing.parent_run_id,
            export_task_id=existing.export_task_id,
            source_arn=existing.source_arn,
            snapshot_time=existing.snapshot_time,
            repeated=True,
        )

    def _cancel_unstarted(self, run_time: datetime, as_of: date | None, exc: Exception) -> None:
        """The run was created but its export not started (transient fault). Close it, unless
        the export exists after all (then the next poll adopts it). Were it left open, a poll
        would start it later, and without ``as_of`` it would export the wrong snapshot."""
        run_id = run_id_for(run_time)
        exists: bool | None
        try:
            task = export_task_id(self.settings.env, run_time)
            exists = self._exporter().describe_export(task) is not None
        except Rds2bqError:
            exists = None
        if exists or (exists is None and as_of is None):
            return
        cause = f"not started: {exc}"
        self._transition(run_id, lambda r: machine.cancel_unstarted(r, cause, self.clock.now()))

    # ------------------------------------------------------------------ plumbing

    def _transition(self, run_id: str, mutate: Callable[[Run], Transition]) -> Transition:
        return outbox.transition(self.ledger, self.events, run_id, mutate)


def _local(moment: datetime, tz: ZoneInfo) -> str:
    """A time as people read it here: in the configured zone, named, with UTC beside it."""
    local = moment.astimezone(tz)
    return (
        f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({tz.key}; "
        f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
    )
