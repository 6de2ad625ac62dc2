"""The experiment controller: which searches take part in the running experiment, in which arm, and what shoppers'
feedback on those answers says.

    start    a named experiment: two arms (orchestrator/experiments/arms.py), a method, the share of searches in it
    assign   a search is in the experiment when the hash of its key (the user id, else the request id) with the
             experiment's name falls in the first `share` of the buckets, so a user stays in or out, and in A/B
             stays in one arm
    served   an answer in the experiment: each shown product's arm, kept for a while to join feedback to
    join     a feedback event naming the request it came from: a click (or cart, purchase) on an interleaved answer
             re-credits that query; on an A/B answer it counts toward its arm's clicks in the top 10 (or purchases)
    stop     the experiment serves no more; its figures and decision stay

Interleave: every search in the share is answered with the team-draft interleaving of both arms' rankings (the
pipeline ranks the shared candidates twice). A/B: half the share's users get each arm's ranking. The decision is
the sequential test of orchestrator/experiments/stats.py, fixed before the start.

One experiment runs at a time; an interleaved rollout (the rollout controller's quality guard) is one. The state
(each experiment's arms and tallies) is saved as one JSON file, replaced atomically, every few seconds and at each
start and stop, so a restart keeps the figures. The answers waiting for feedback live in this process only: feedback
that reaches another replica, or arrives after `join_window_s`, is counted as unjoined (the impression log has both
sides for a later join).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core.errors import ConfigError, ExperimentError, InvalidRequest

from .arms import Arm, parse_arm
from .interleave import CONTROL, TREATMENT, credit
from .stats import ALPHA, SHOPPER_BUCKETS, ArmTally, Decision, InterleavingTally, ab_decision

log = logging.getLogger(__name__)

METHODS = ("interleave", "ab")
ARMS = (CONTROL, TREATMENT)
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
BUCKETS = 10_000
CLICK_DEPTH = 10  # A/B counts clicks in the top 10
CLICKS = ("click", "cart", "purchase")  # a cart or purchase of a shown product implies it was clicked
MAX_STOPPED = 20  # stopped experiments kept in the state
SAVE_EVERY_S = 2.0


@dataclass
class Experiment:
    """One experiment's definition and figures."""

    name: str
    method: str
    control: str
    treatment: str
    share: float
    started: float
    stopped: float = 0.0
    guard: bool = False  # a rollout's quality guard: stopped by the rollout, not by hand
    shown: int = 0
    interleaving: InterleavingTally = field(default_factory=InterleavingTally)
    arms: dict[str, ArmTally] = field(default_factory=lambda: {arm: ArmTally.empty() for arm in ARMS})
    feedback_joined: int = 0
    feedback_unjoined: int = 0

    @property
    def running(self) -> bool:
        return not self.stopped

    def decision(self, alpha: float = ALPHA) -> Decision:
        if self.method == "interleave":
            return self.interleaving.decision(alpha)
        return ab_decision(self.arms[CONTROL].clicks, self.arms[TREATMENT].clicks, alpha)

    def status(self) -> dict:
        decision = self.decision()
        return {"name": self.name, "method": self.method, "control": self.control, "treatment": self.treatment,
                "share": self.share, "running": self.running, "started": self.started, "stopped": self.stopped,
                "guard": self.guard, "shown": self.shown, "decision": decision.outcome,
                "log_ratio": decision.log_ratio, "threshold": decision.threshold,
                "interleaving": self.interleaving.figures() if self.method == "interleave" else None,
                "arms": {arm: {"spec": self.control if arm == CONTROL else self.treatment, **tally.figures()}
                         for arm, tally in self.arms.items()} if self.method == "ab" else None,
                "feedback_joined": self.feedback_joined, "feedback_unjoined": self.feedback_unjoined}

    def to_json(self) -> dict:
        """The saved form, built field by field: `asdict` would deep-copy an A/B arm's 1,000 buckets (7.6 ms on the
        event loop at each save instead of well under 1)."""
        data = {item.name: getattr(self, item.name) for item in fields(self)
                if item.name not in ("interleaving", "arms")}
        data["interleaving"] = asdict(self.interleaving)
        data["arms"] = {arm: tally.to_json() for arm, tally in self.arms.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Experiment":
        data = dict(data)
        data["interleaving"] = InterleavingTally(**data.get("interleaving", {}))
        data["arms"] = {arm: ArmTally.from_json(tally)
                        for arm, tally in data.get("arms", {}).items()} or {arm: ArmTally.empty() for arm in ARMS}
        return cls(**data)


@dataclass(frozen=True)
class Assignment:
    """A search's part in the running experiment: both arms to interleave, or the one arm of an A/B test."""

    experiment: str
    method: str
    control: Arm
    treatment: Arm
    arm: str = ""  # A/B: CONTROL or TREATMENT
    bucket: int = 0  # A/B: the shopper's bucket in its arm (stats.ShopperMoments)

    def arm_query(self, query):
        """A/B: the query as its arm ranks it."""
        return (self.treatment if self.arm == TREATMENT else self.control).apply(query)


@dataclass
class Served:
    """An answer in an experiment, waiting for feedback."""

    experiment: str
    method: str
    arms: tuple[str, ...]  # per shown position
    products: tuple[str, ...]
    clicked: set[int] = field(default_factory=set)  # positions
    outcome: int | None = None  # interleave: the credit counted so far (None: no click yet)
    bucket: int = 0  # A/B: the shopper's bucket
    expires: float = 0.0  # time.monotonic(): in this process only, never saved


class ExperimentController:
    """Owns the experiments, assigns searches to them and joins feedback to their answers."""

    def __init__(self, state_path: Path | None, join_window_s: float = 3600.0, max_waiting: int = 200_000,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.state_path = Path(state_path) if state_path is not None else None
        self.join_window_s = join_window_s
        self.max_waiting = max_waiting
        self.clock = clock  # wall time: what is saved or shown (an experiment's start and stop)
        # The join window runs on this one, which a step of the wall clock (NTP, a VM resumed) does not move.
        self.monotonic = monotonic
        self.experiments: dict[str, Experiment] = {}
        self._arms: dict[str, tuple[Arm, Arm]] = {}
        self._waiting: OrderedDict[str, Served] = OrderedDict()  # request id -> answer, oldest first
        self._dirty = False
        self._saver: asyncio.Task | None = None
        # Raises ExperimentError for an arm this service cannot serve (a reranker version it has not loaded).
        self.check_arm: Callable[[Arm], None] | None = None

    # ------------------------------------------------------------------------------------------- start and stop

    def open(self) -> "ExperimentController":
        """Read the saved state (a running experiment goes on) and start saving changes."""
        for experiment in self._load():
            self.experiments[experiment.name] = experiment
            if experiment.running:
                try:
                    self._arms[experiment.name] = (parse_arm(experiment.control), parse_arm(experiment.treatment))
                except InvalidRequest as error:
                    raise ConfigError(f"experiment state {self.state_path}: experiment {experiment.name!r}: {error}; "
                                      "fix or remove it") from None
        self._saver = asyncio.create_task(self._save_often())
        return self

    async def close(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
            await asyncio.gather(self._saver, return_exceptions=True)
            self._saver = None
        self.save()

    @property
    def running(self) -> Experiment | None:
        return next((experiment for experiment in self.experiments.values() if experiment.running), None)

    def start(self, name: str, control: str, treatment: str, method: str, share: float,
              guard: bool = False) -> Experiment:
        """Start an experiment. InvalidRequest for a malformed one; ExperimentError when one is running or the name
        was used."""
        if not NAME.fullmatch(name or ""):
            raise InvalidRequest(f"an experiment's name is 1 to 64 letters, digits, '.', '_' or '-', not {name!r}")
        if method not in METHODS:
            raise InvalidRequest(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        if not 0.0 < share <= 1.0:
            raise InvalidRequest(f"share must lie in (0, 1], not {share!r}")
        arms = (parse_arm(control), parse_arm(treatment))
        if self.check_arm is not None:
            for arm in arms:
                self.check_arm(arm)
        if arms[0] == arms[1]:
            raise InvalidRequest(f"the control and the treatment are the same arm ({arms[0].text}): an A/A "
                                 "experiment teaches nothing here (benchmarks/interleaving_sim.py measures A/A runs)")
        running = self.running
        if running is not None:
            raise ExperimentError(f"experiment {running.name!r} is running: stop it first (one runs at a time)")
        if name in self.experiments:
            raise ExperimentError(f"an experiment named {name!r} ran already: choose another name")
        experiment = Experiment(name, method, arms[0].text, arms[1].text, share, started=self.clock(), guard=guard)
        self.experiments[name] = experiment
        self._arms[name] = arms
        self._forget_stopped()
        self.save()
        log.warning("experiment %s started: %s %s against %s on %.0f%% of searches", name, method, arms[1].text,
                    arms[0].text, share * 100)
        return experiment

    def set_share(self, name: str, share: float) -> Experiment:
        """Change a running experiment's share of searches (a rollout's shift); saved at once."""
        experiment = self.get(name)
        if not 0.0 < share <= 1.0:
            raise InvalidRequest(f"share must lie in (0, 1], not {share!r}")
        experiment.share = share
        self.save()
        return experiment

    def stop(self, name: str) -> Experiment:
        experiment = self.get(name)
        if not experiment.running:
            raise ExperimentError(f"experiment {name!r} stopped already")
        experiment.stopped = self.clock()
        for tally in experiment.arms.values():
            tally.buckets = []  # a stopped experiment's figures are final: its moments keep them
        self._arms.pop(name, None)
        self.save()
        log.warning("experiment %s stopped: %s", name, experiment.decision().outcome)
        return experiment

    def get(self, name: str) -> Experiment:
        if name not in self.experiments:
            raise ExperimentError(f"no experiment named {name!r}")
        return self.experiments[name]

    def status(self, name: str = "") -> list[dict]:
        return [self.get(name).status()] if name else [experiment.status() for experiment in self.experiments.values()]

    # ------------------------------------------------------------------------------------------------ searches

    def assign(self, user_id: str, request_id: str) -> Assignment | None:
        """The search's part in the running experiment, or None."""
        experiment = self.running
        if experiment is None:
            return None
        key = f"{experiment.name}\0{user_id or request_id}".encode("utf-8")
        digest = hashlib.sha256(key).digest()
        if int.from_bytes(digest[:8], "big") % BUCKETS >= experiment.share * BUCKETS:
            return None
        control, treatment = self._arms[experiment.name]
        arm = "" if experiment.method == "interleave" else (TREATMENT if digest[8] & 1 else CONTROL)
        bucket = int.from_bytes(digest[9:13], "big") % SHOPPER_BUCKETS
        return Assignment(experiment.name, experiment.method, control, treatment, arm, bucket)

    def served(self, request_id: str, assignment: Assignment, products: list[str], arms: list[str]) -> None:
        """An answer in the experiment was sent: count it, and keep it for the feedback on it."""
        experiment = self.experiments.get(assignment.experiment)
        if experiment is None or not experiment.running:
            return
        experiment.shown += 1
        if assignment.method == "ab":
            experiment.arms[assignment.arm].add_search(assignment.bucket)
        else:
            experiment.interleaving.shown += 1
        self._waiting[request_id] = Served(assignment.experiment, assignment.method, tuple(arms), tuple(products),
                                           bucket=assignment.bucket, expires=self.monotonic() + self.join_window_s)
        while len(self._waiting) > self.max_waiting:
            self._waiting.popitem(last=False)
        self._dirty = True

    def join(self, request_id: str, product_id: str, event_type: str, position: int = 0) -> tuple[str, str, int]:
        """Join a recorded feedback event to the answer it names: (experiment, the arm that placed the product,
        its position); ("", "", position) when this replica holds no such answer in a running experiment."""
        served = self._served(request_id)
        experiment = self.experiments.get(served.experiment) if served is not None else None
        if served is None or experiment is None or not experiment.running:
            running = self.running
            if running is not None and request_id:
                running.feedback_unjoined += 1
            return "", "", position
        if not (1 <= position <= len(served.products) and served.products[position - 1] == product_id):
            position = served.products.index(product_id) + 1 if product_id in served.products else 0
        experiment.feedback_joined += 1
        self._dirty = True
        if not position:  # a product the answer did not show
            return experiment.name, "", 0
        arm = served.arms[position - 1]
        if event_type not in CLICKS:
            return experiment.name, arm, position
        if served.method == "interleave":
            if position not in served.clicked:
                served.clicked.add(position)
                outcome = credit(served.arms, served.clicked)
                experiment.interleaving.add(outcome, was=served.outcome)
                served.outcome = outcome
        else:
            tally = experiment.arms[arm]
            if position <= CLICK_DEPTH and position not in served.clicked:
                served.clicked.add(position)
                tally.add_click(served.bucket)
            if event_type == "purchase":
                tally.add_purchase(served.bucket)
        return experiment.name, arm, position

    def _served(self, request_id: str) -> Served | None:
        now = self.monotonic()
        while self._waiting:  # the oldest first: drop what can no longer be joined
            oldest = next(iter(self._waiting.values()))
            if oldest.expires > now:
                break
            self._waiting.popitem(last=False)
        return self._waiting.get(request_id) if request_id else None

    # ------------------------------------------------------------------------------------------------- the state

    def _forget_stopped(self) -> None:
        stopped = [name for name, experiment in self.experiments.items() if not experiment.running]
        for name in stopped[:-MAX_STOPPED]:
            del self.experiments[name]

    def _load(self) -> list[Experiment]:
        if self.state_path is None or not self.state_path.is_file():
            return []
        try:
            data = json.loads(self.state_path.read_text())
            return [Experiment.from_json(item) for item in data["experiments"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"experiment state {self.state_path} cannot be read ({error}); fix or remove it") from None

    def save(self) -> None:
        """Write the state now."""
        self._write(self._payload())

    def _payload(self) -> str:
        self._dirty = False
        return json.dumps({"experiments": [experiment.to_json() for experiment in self.experiments.values()]})

    def _write(self, payload: str) -> None:
        """Replace the state file atomically: written beside it, fsynced, renamed over it."""
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.state_path.with_name(self.state_path.name + ".partial")
        with open(staging, "w", encoding="utf-8") as handle:
            handle.write(payload + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, self.state_path)

    async def _save_often(self) -> None:
        while True:
            await asyncio.sleep(SAVE_EVERY_S)
            if self._dirty:
                try:
                    await asyncio.to_thread(self._write, self._payload())  # encoded here, on the loop that changes it
                except OSError as error:  # the figures stay in memory; the next save tries again
                    log.error("experiment state not saved: %s", error)
                    self._dirty = True
