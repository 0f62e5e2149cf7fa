"""The healthcheck daemon's engine: schedule probes, keep the verdict, report it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from routerd.config import SpecModel
from routerd.daemon.engine import CommandOutcome
from routerd.daemon.engine import DaemonContext
from routerd.daemon.engine import DaemonEngine
from routerd.daemon.loop import TimerHandle
from routerd.errors import UnknownCommand

from routerd_healthcheck.checker import Checker
from routerd_healthcheck.checker import Outcome
from routerd_healthcheck.checker import iso
from routerd_healthcheck.probes import ProbeResult
from routerd_healthcheck.probes import run_probe
from routerd_healthcheck.spec import HealthCheckSpec

TOPIC_HEALTHY = "routerd.healthcheck.state.healthy"
TOPIC_UNHEALTHY = "routerd.healthcheck.state.unhealthy"
TOPIC_PROBE_SUCCEEDED = "routerd.healthcheck.probe.succeeded"
TOPIC_PROBE_FAILED = "routerd.healthcheck.probe.failed"
TOPIC_PROBE_ERROR = "routerd.healthcheck.probe.error"
#: Every topic this plugin emits (checked against docs/events.md by a test).
TOPICS = (
    TOPIC_HEALTHY,
    TOPIC_UNHEALTHY,
    TOPIC_PROBE_SUCCEEDED,
    TOPIC_PROBE_FAILED,
    TOPIC_PROBE_ERROR,
)


class HealthCheckEngine(DaemonEngine):
    """Runs on the engine thread; probes themselves run on worker threads."""

    def __init__(self, ctx: DaemonContext) -> None:
        assert isinstance(ctx.spec, HealthCheckSpec)
        self.spec: HealthCheckSpec = ctx.spec
        self.ctx = ctx
        self.checker = Checker(self.spec.healthy_threshold, self.spec.unhealthy_threshold)
        self.timer: TimerHandle | None = None
        self.in_flight: Future[Outcome] | None = None
        self.in_flight_since = 0.0  # loop clock
        self.stalled = False
        self.seq = 0
        self.skipped = 0
        #: The probe function, run on a worker thread (tests inject a fake).
        self.run_probe: Callable[..., ProbeResult] = run_probe
        self.next_probe_at: float | None = None
        self.stopped = False

    # -- lifecycle -------------------------------------------------------------
    def start(self, ctx: DaemonContext) -> None:
        saved = ctx.state.load()
        if saved and saved.get("target") == self._identity():
            self.checker.restore(
                saved.get("checker", {}), ctx.wall(), max(3 * self.spec.interval, 60)
            )
        if self.checker.verdict in ("Healthy", "Unhealthy"):
            self._set_phase(self.checker.verdict, "Restored", "verdict restored from state")
        else:
            ctx.status.set_phase("Pending", "FirstProbe", "waiting for the first probes")
        self._publish()
        self._schedule(0.0)

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
        self._save()

    def reload(self, spec: SpecModel) -> str:
        assert isinstance(spec, HealthCheckSpec)
        old = self.spec
        changed = sorted(
            name for name in type(spec).model_fields if getattr(old, name) != getattr(spec, name)
        )
        self.spec = spec
        if self._identity(old) != self._identity(spec):
            # A different target is a different check: its history says nothing.
            self.checker = Checker(spec.healthy_threshold, spec.unhealthy_threshold)
            self.ctx.status.set_phase("Pending", "Reconfigured", "target changed; probing again")
        else:
            verdict = self.checker.set_thresholds(spec.healthy_threshold, spec.unhealthy_threshold)
            if verdict is not None:
                self._verdict_changed(verdict, None)
        self._schedule(0.0)
        self._publish()
        return "changed: " + ", ".join(changed) if changed else "no change"

    def command(self, name: str, args: dict[str, Any]) -> CommandOutcome | Future[CommandOutcome]:
        if name != "renew":
            raise UnknownCommand(f"healthcheck has no command {name!r}")
        probe = self._probe_now("renew")
        result: Future[CommandOutcome] = Future()

        def done(fut: Future[Outcome]) -> None:
            try:
                outcome = fut.result()
            except Exception as exc:  # run_probe never raises; belt and braces
                result.set_exception(exc)
                return
            result.set_result(
                CommandOutcome(
                    f"probe {'ok' if outcome.ok else 'failed'}: {outcome.detail}",
                    {"probe": outcome.to_json(), "phase": self.ctx.status.phase},
                )
            )

        probe.add_done_callback(done)
        return result

    # -- probing ---------------------------------------------------------------
    def _identity(self, spec: HealthCheckSpec | None = None) -> str:
        s = spec or self.spec
        port = f":{s.effective_port}" if s.effective_port is not None else ""
        # Redacted: the identity is shown in events and saved in state.json,
        # and a new token for the same URL is the same check.
        path = s.shown_path if s.protocol.startswith("http") else ""
        return f"{s.protocol}://{s.target}{port}{path}"

    def _schedule(self, delay: float) -> None:
        if self.stopped:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.ctx.loop.call_later(delay, self._on_timer)
        self.next_probe_at = self.ctx.wall() + delay

    def _on_timer(self) -> None:
        self.timer = None
        if self.in_flight is not None and not self.in_flight.done():
            self.skipped += 1  # the previous probe still runs (timeout ~ interval)
            age = self.ctx.loop.clock() - self.in_flight_since
            if not self.stalled and age > self.spec.timeout + max(self.spec.interval, 1.0):
                self._stall(age)
        else:
            self._probe_now("interval")
        self._schedule(self.spec.interval)

    def _probe_now(self, why: str) -> Future[Outcome]:
        """Start a probe on a worker thread; the future resolves after it is accounted."""
        if self.in_flight is not None and not self.in_flight.done():
            return self.in_flight
        self.seq += 1
        spec, seq, probe = self.spec.to_probe_spec(), self.seq, self.run_probe
        accounted: Future[Outcome] = Future()
        self.in_flight = accounted
        self.in_flight_since = self.ctx.loop.clock()

        def finished(fut: Future[ProbeResult]) -> None:
            try:
                res = fut.result()
            except Exception as exc:
                res = ProbeResult(
                    False, None, "probe crashed", error=f"{type(exc).__name__}: {exc}"
                )
            try:
                accounted.set_result(self._account(res, why))
            except BaseException as exc:
                # Whatever broke the accounting, the probe is over: the next
                # one must run (the loop logs and counts the error).
                accounted.set_exception(exc)
                raise

        self.ctx.loop.run_in_worker(lambda: probe(spec, seq=seq), on_done=finished)
        return accounted

    def _stall(self, age: float) -> None:
        """A probe runs far past its timeout: the verdict is no longer current."""
        self.stalled = True
        why = (
            f"a probe started {age:.1f} s ago has not finished (timeout {self.spec.timeout:g} s); "
            f"the last verdict ({self.checker.verdict}) is not current"
        )
        self.checker.stall()
        status = self.ctx.status
        status.set_condition("ProbeReady", False, "ProbeStalled", why)
        status.set_condition("TargetReachable", None, "VerdictStale", why)
        status.set_phase("Error", "ProbeStalled", why)
        self._publish()

    def _account(self, res: ProbeResult, why: str) -> Outcome:
        was_stalled, self.stalled = self.stalled, False
        outcome = Outcome(self.ctx.wall(), res.ok, res.latency, res.detail, res.error, res.address)
        previous = self.checker.verdict
        verdict = self.checker.record(outcome)
        if verdict is None and was_stalled:
            verdict = self.checker.verdict  # replace the ProbeStalled conditions
        latency_ms = None if res.latency is None else round(res.latency * 1000, 3)
        if res.error is not None:
            topic, reason = TOPIC_PROBE_ERROR, "ProbeError"
        elif res.ok:
            topic, reason = TOPIC_PROBE_SUCCEEDED, "ProbeSucceeded"
        else:
            topic, reason = TOPIC_PROBE_FAILED, "ProbeFailed"
        self.ctx.emit(
            topic,
            reason=reason,
            message=res.error or res.detail,
            severity="debug",
            ok=res.ok,
            latencyMs=latency_ms,
            target=self.spec.target,
            protocol=self.spec.protocol,
            trigger=why,
            consecutiveSuccesses=self.checker.consecutive_ok,
            consecutiveFailures=self.checker.consecutive_fail,
        )
        if verdict is not None:
            self._verdict_changed(verdict, outcome, previous)
        self._publish(outcome)
        self._save()
        return outcome

    def _verdict_changed(self, verdict: str, outcome: Outcome | None, previous: str = "") -> None:
        detail = outcome.detail if outcome else "thresholds changed"
        status = self.ctx.status
        if verdict == "Error":
            why = outcome.error if outcome and outcome.error else "probe cannot run"
            status.set_condition("ProbeReady", False, "ProbeCannotRun", why)
            status.set_phase("Error", "ProbeCannotRun", why)
            return
        status.set_condition("ProbeReady", True, "ProbeRuns", "")
        if verdict == "Pending":
            status.set_phase("Pending", "Recovering", "probe runs again; waiting for a threshold")
            return
        self._set_phase(
            verdict,
            "SuccessThresholdMet" if verdict == "Healthy" else "FailureThresholdMet",
            detail,
        )
        healthy = verdict == "Healthy"
        self.ctx.emit(
            TOPIC_HEALTHY if healthy else TOPIC_UNHEALTHY,
            reason="Healthy" if healthy else "Unhealthy",
            message=f"{self._identity()} is {verdict.lower()}: {detail}",
            severity="info" if healthy else "warning",
            target=self.spec.target,
            protocol=self.spec.protocol,
            previous=previous or "Pending",
            consecutiveSuccesses=self.checker.consecutive_ok,
            consecutiveFailures=self.checker.consecutive_fail,
        )

    def _set_phase(self, verdict: str, reason: str, detail: str) -> None:
        healthy = verdict == "Healthy"
        self.ctx.status.set_condition("TargetReachable", healthy, reason, detail)
        self.ctx.status.set_phase(verdict, reason, detail)

    # -- status and state ------------------------------------------------------
    def _publish(self, last: Outcome | None = None) -> None:
        c = self.checker
        last = last or (c.history[-1] if c.history else None)
        self.ctx.status.set_observed(
            {
                "protocol": self.spec.protocol,
                "target": self.spec.target,
                "port": self.spec.effective_port,
                "sourceInterface": self.spec.source_interface,
                "sourceAddress": self.spec.source_address,
                "fwmark": self.spec.fwmark,
                "interval": self.spec.interval,
                "timeout": self.spec.timeout,
                "healthyThreshold": self.spec.healthy_threshold,
                "unhealthyThreshold": self.spec.unhealthy_threshold,
                "verdict": c.verdict,
                "consecutiveSuccesses": c.consecutive_ok,
                "consecutiveFailures": c.consecutive_fail,
                "totalProbes": c.total,
                "successes": c.successes,
                "failures": c.failures,
                "errors": c.errors,
                "skippedProbes": self.skipped,
                "lastResult": last.to_json() if last else None,
                "lastLatencyMs": None
                if last is None or last.latency is None
                else round(last.latency * 1000, 3),
                "firstFailureAt": iso(c.first_failure),
                "lastFailureAt": iso(c.last_failure),
                "lastSuccessAt": iso(c.last_success),
                "nextProbeAt": iso(self.next_probe_at),
                "history": [o.to_json() for o in c.history],
            }
        )

    def _save(self) -> None:
        try:
            self.ctx.state.save(
                {"version": 1, "target": self._identity(), "checker": self.checker.to_json()}
            )
        except OSError as exc:
            # Reported (once per episode) and retried by the runtime: the
            # PersistenceDegraded condition says it, not a line per probe.
            self.ctx.log.debug("cannot save state now: %s", exc)
