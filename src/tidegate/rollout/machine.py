"""The rolling upgrade of one instance, as a sans-I/O phase machine.

Theory of operation: the machine is fed events (what happened) and answers each with exactly one
command (what to do next); the shell in runner.py performs the command and feeds back its
outcome. Time comes in with the events, so the machine is tested without sleeping.

    withdraw  take the instance out of new work — http and dns: drain at the gateway (the address
              also leaves DNS answers); lvs: quiesce (weight 0)
    settle    http: in-flight requests (the gateway's "connections") reach 0;
              lvs: the real server's active connection count reaches 0;
              dns: the address leaves the answers, then wait the pool's max TTL plus grace,
              since resolvers' caches may hand it out that long
    restart   ask the instance's supervisor to restart it (SIGTERM → drain → exit → start again)
    starting  the supervisor reports the new process (a higher generation) listening
    health    the new process answers its health check `rise` times in a row, `interval` apart
    readmit   http and dns: enable (the gateway ramps it up through slow start); lvs: old weight;
              then wait until the gateway shows it serving (up or slow-start): its own checks
              may need a moment longer than ours before they agree
    done / failed

On failure the instance is left as safe as the failure allows: if its process was never touched
(withdraw, settle or the restart request failed) it is readmitted, so the pool is as it was; if
the new process does not come up healthy it stays withdrawn, and the rest of the pool serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SERVING = ("up", "slow-start")  # states that take new work at the gateway


class Layer(StrEnum):
    HTTP = "http"
    DNS = "dns"
    LVS = "lvs"


class Phase(StrEnum):
    WAITING = "waiting"
    WITHDRAW = "withdraw"
    SETTLE = "settle"
    RESTART = "restart"
    STARTING = "starting"
    HEALTH = "health"
    READMIT = "readmit"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Limits:
    settle_timeout: float = 60.0  # in-flight (or connections) must reach 0 within this
    restart_timeout: float = 60.0  # the old process exits and the new one listens within this
    health_timeout: float = 30.0  # the new process passes `rise` checks within this
    rise: int = 2
    interval: float = 1.0  # between health probes
    poll: float = 0.1  # between reads of the figures and of the supervisor's state
    dns_wait: float = 0.0  # dns layer: max TTL + grace
    dns_why: str = ""


_WITHDRAWN = {
    Layer.HTTP: "drained at the gateway",
    Layer.DNS: "drained (its address leaves the DNS answers)",
    Layer.LVS: "quiesced (weight 0)",
}


# --- events: what happened ------------------------------------------------------------------------
@dataclass(frozen=True)
class Started:
    now: float
    weight: int = 1  # the weight to give back after an lvs quiesce
    version: str | None = None  # what the instance runs now, when its supervisor says


@dataclass(frozen=True)
class Withdrawn:
    now: float


@dataclass(frozen=True)
class Load:
    now: float
    count: int  # requests in flight (http) or connections (lvs)


@dataclass(frozen=True)
class Waited:
    now: float


@dataclass(frozen=True)
class RestartAsked:
    now: float
    generation: int  # the generation the new process will have


@dataclass(frozen=True)
class Supervised:
    now: float
    state: str  # the supervisor's word for the process: starting, running, exiting, backoff …
    generation: int
    version: str | None = None
    last_exit: int | None = None
    crashes: int = 0


@dataclass(frozen=True)
class Probed:
    now: float
    ok: bool
    detail: str = ""  # "200", "503", "connection refused" …
    version: str | None = None


@dataclass(frozen=True)
class Readmitted:
    now: float


@dataclass(frozen=True)
class StateSeen:
    now: float
    state: str  # the instance's state at the gateway (admin API)
    detail: str = ""  # what the gateway's own health check last said, when it says


@dataclass(frozen=True)
class Failed:
    now: float
    what: str  # a command could not be carried out (admin API or supervisor error)


Event = (
    Started | Withdrawn | Load | Waited | RestartAsked | Supervised | Probed | Readmitted | StateSeen | Failed
)


# --- commands: what to do next -------------------------------------------------------------------
@dataclass(frozen=True)
class Withdraw:
    layer: Layer


@dataclass(frozen=True)
class ReadLoad:
    layer: Layer


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class AskRestart:
    pass


@dataclass(frozen=True)
class ReadSupervisor:
    pass


@dataclass(frozen=True)
class Probe:
    pass


@dataclass(frozen=True)
class Readmit:
    layer: Layer
    weight: int


@dataclass(frozen=True)
class ReadState:
    pass


@dataclass(frozen=True)
class Finish:
    ok: bool
    message: str


Command = Withdraw | ReadLoad | Wait | AskRestart | ReadSupervisor | Probe | Readmit | ReadState | Finish


class InstanceRollout:
    def __init__(self, address: str, layer: Layer = Layer.HTTP, limits: Limits | None = None) -> None:
        self.address = address
        self.layer = layer
        self.limits = limits or Limits()
        self.phase = Phase.WAITING
        self.phase_since = 0.0
        self.started_at = 0.0
        self.weight = 1
        self.load: int | None = None
        self.generation = 0
        self.passes = 0
        self.last_probe = ""
        self.version_before: str | None = None
        self.version_after: str | None = None
        self.notes: list[str] = []  # one line per finished phase: how long it took and why
        self.outcome: Finish | None = None
        self._pending_failure: str | None = None  # said once the readmission after a failure is done
        self._supervisor_seen = ""
        self._readmitted_at: float | None = None
        self._withdrawn_at: float | None = None  # dns: when the address left the answers
        self.gateway_state = ""

    # The one entry point.
    def step(self, event: Event) -> Command:
        if self.outcome is not None:
            return self.outcome
        handler = getattr(self, "_on_" + self.phase.value)
        command: Command = handler(event)
        if isinstance(command, Finish):
            self.outcome = command
            self._enter(Phase.DONE if command.ok else Phase.FAILED, event.now)
        return command

    @property
    def status(self) -> str:
        """A short line for the progress display."""
        if self.phase is Phase.SETTLE and self.layer is Layer.DNS:
            if self._withdrawn_at is None:
                return "waiting for it to leave the DNS answers"
            return f"waiting {self.limits.dns_wait:g} s ({self.limits.dns_why})"
        if self.phase is Phase.SETTLE:
            http = self.layer is Layer.HTTP
            if self.load is None:  # withdrawn, its load not read yet
                return "counting requests in flight" if http else "counting connections"
            return f"{self.load} {'in flight' if http else 'connections'}"
        if self.phase is Phase.STARTING:
            return self._supervisor_seen
        if self.phase is Phase.READMIT and self.gateway_state:
            return f"gateway says {self.gateway_state}"
        if self.phase is Phase.HEALTH:
            return f"check {self.passes}/{self.limits.rise}" + (
                f" (last: {self.last_probe})" if self.last_probe else ""
            )
        return ""

    # --- phase handlers ------------------------------------------------------------------------
    def _enter(self, phase: Phase, now: float) -> None:
        self.phase = phase
        self.phase_since = now

    def _note(self, now: float, text: str) -> None:
        self.notes.append(f"{self.phase.value}: {text} ({now - self.phase_since:.1f} s)")

    def _on_waiting(self, event: Event) -> Command:
        if not isinstance(event, Started):
            return self._unexpected(event)
        self.started_at = event.now
        self.weight = event.weight
        self.version_before = event.version
        self._enter(Phase.WITHDRAW, event.now)
        return Withdraw(self.layer)

    def _on_withdraw(self, event: Event) -> Command:
        if isinstance(event, Failed):
            return Finish(False, f"{self.address}: could not take it out of rotation: {event.what}")
        if not isinstance(event, Withdrawn):
            return self._unexpected(event)
        self._note(event.now, _WITHDRAWN[self.layer])
        self._enter(Phase.SETTLE, event.now)
        return ReadLoad(self.layer)

    def _on_settle(self, event: Event) -> Command:
        now = event.now
        if self.layer is Layer.DNS and self._withdrawn_at is not None:
            # Out of the answers: now caches must forget it (max TTL + grace), whatever it serves.
            waited = now - self._withdrawn_at
            if not isinstance(event, Waited):
                return self._unexpected(event)
            if waited >= self.limits.dns_wait - 1e-3:  # (a sleep may end a hair early)
                self._note(
                    now,
                    f"out of the DNS answers, then waited {waited:.1f} s for {self.limits.dns_why}",
                )
                return self._ask_restart(now)
            return Wait(self.limits.dns_wait - waited)
        what = {
            Layer.HTTP: "requests in flight",
            Layer.LVS: "connections",
            Layer.DNS: "DNS answers",
        }[self.layer]
        if isinstance(event, Load):
            self.load = event.count
            if event.count <= 0 and self.layer is Layer.DNS:
                self._withdrawn_at = now
                return Wait(self.limits.dns_wait)
            if event.count <= 0:
                self._note(now, f"0 {what}")
                return self._ask_restart(now)
        elif isinstance(event, Failed):
            self.load = None
            self.last_probe = event.what
        elif not isinstance(event, Waited):
            return self._unexpected(event)
        if isinstance(event, Waited):
            return ReadLoad(self.layer)
        if now - self.phase_since >= self.limits.settle_timeout:
            if self.layer is Layer.DNS and self.load:
                left = "its address is still in the DNS answers"
            elif self.load is not None:
                left = f"still {self.load} {what}"
            else:
                left = f"could not read them: {self.last_probe}"
            return self._readmit_and_fail(
                now,
                f"{self.address}: {left} after {self.limits.settle_timeout:g} s; "
                "it was not restarted and is back in rotation",
            )
        return Wait(self.limits.poll)

    def _ask_restart(self, now: float) -> Command:
        self._enter(Phase.RESTART, now)
        return AskRestart()

    def _on_restart(self, event: Event) -> Command:
        if isinstance(event, Failed):
            return self._readmit_and_fail(
                event.now,
                f"{self.address}: the supervisor did not take the restart: {event.what}; back in rotation",
            )
        if not isinstance(event, RestartAsked):
            return self._unexpected(event)
        self.generation = event.generation
        self._note(event.now, "asked the supervisor to restart it")
        self._enter(Phase.STARTING, event.now)
        return ReadSupervisor()

    def _on_starting(self, event: Event) -> Command:
        now = event.now
        if isinstance(event, Supervised):
            if event.generation < self.generation:
                self._supervisor_seen = f"old process {event.state}"
            else:
                self._supervisor_seen = f"new process {event.state}"
                if event.crashes or event.last_exit not in (None, 0):
                    self._supervisor_seen += f" (last exit code {event.last_exit})"
                if event.state == "running":
                    self.version_after = event.version
                    self._note(now, "new process listening")
                    self._enter(Phase.HEALTH, now)
                    self.passes = 0
                    return Probe()
        elif isinstance(event, Failed):
            self._supervisor_seen = event.what
        elif isinstance(event, Waited):
            return ReadSupervisor()
        else:
            return self._unexpected(event)
        if now - self.phase_since >= self.limits.restart_timeout:
            return Finish(
                False,
                f"{self.address}: the new process did not start within {self.limits.restart_timeout:g} s "
                f"({self._supervisor_seen}); it stays out of rotation, the rest of the pool serves",
            )
        return Wait(self.limits.poll)

    def _on_health(self, event: Event) -> Command:
        now = event.now
        if isinstance(event, Waited):
            return Probe()
        if isinstance(event, Failed):
            event = Probed(now, False, event.what)
        if not isinstance(event, Probed):
            return self._unexpected(event)
        self.last_probe = event.detail
        if event.version is not None:
            self.version_after = event.version
        if event.ok:
            self.passes += 1
            if self.passes >= self.limits.rise:
                self._note(now, f"passed {self.passes} checks")
                self._enter(Phase.READMIT, now)
                return Readmit(self.layer, self.weight)
        else:
            self.passes = 0
        if now - self.phase_since >= self.limits.health_timeout:
            version = f" (version {self.version_after})" if self.version_after else ""
            return Finish(
                False,
                f"{self.address}: the new process{version} failed its health check for "
                f"{self.limits.health_timeout:g} s (last answer: {self.last_probe}); it stays out of "
                "rotation, the rest of the pool serves",
            )
        return Wait(self.limits.interval)

    def _on_readmit(self, event: Event) -> Command:
        now = event.now
        if self._pending_failure is not None:  # readmitting an instance whose process was not touched
            if isinstance(event, Readmitted):
                return Finish(False, self._pending_failure)
            if isinstance(event, Failed):
                return Finish(False, f"{self._pending_failure}; and it could not be put back: {event.what}")
            return self._unexpected(event)
        if isinstance(event, Readmitted):
            self._readmitted_at = now
            return ReadState()
        if isinstance(event, Waited):
            return ReadState()
        if isinstance(event, StateSeen):
            self.gateway_state = event.state
            if event.state in SERVING:
                self._note(now, f"back in rotation ({event.state})")
                return Finish(True, f"{self.address}: upgraded in {now - self.started_at:.1f} s")
            if event.detail:
                self.last_probe = event.detail
        elif isinstance(event, Failed):
            if self._readmitted_at is None:
                return Finish(False, f"{self.address}: could not put it back in rotation: {event.what}")
            self.last_probe = event.what
        else:
            return self._unexpected(event)
        if now - self.phase_since >= self.limits.health_timeout:
            return Finish(
                False,
                f"{self.address}: readmitted, but the gateway still has it {self.gateway_state or '?'} after "
                f"{self.limits.health_timeout:g} s (its last check: {self.last_probe or '?'})",
            )
        return Wait(self.limits.poll)

    def _readmit_and_fail(self, now: float, message: str) -> Command:
        self._pending_failure = message
        self._enter(Phase.READMIT, now)
        return Readmit(self.layer, self.weight)

    def _unexpected(self, event: Event) -> Command:
        return Finish(
            False, f"{self.address}: internal error: {type(event).__name__} in phase {self.phase.value}"
        )

    # done and failed only ever answer with their outcome (step() returns it before we get here).
    _on_done = _on_failed = _unexpected
