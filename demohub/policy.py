"""The registry's room and budget decisions, as pure functions over a snapshot.

The registry measures, takes a `Snapshot` under its lock, asks one of these
functions what to do, releases the lock and carries the answer out; nothing
here waits, reads /proc or logs, so every rule is a table test
(tests/test_policy.py).

How memory is counted (PSS, the default metric): the total under the hub is
the sum of every process's PSS, and that sum is what the budget holds. Ending
a model does not give back its PSS: pages it shared with a template or a
sibling stay, now counted in full by whoever still maps them, so the total
falls only by the model's private pages (USS). That is why a template's PSS
"jumps" when its last worker ends, and why a plan that subtracted a model's
PSS on eviction believed in room that was not there (issue 32). Here a model
that ends frees its `frees` (USS), a load adds its `need` (the most private
memory one copy of it has held, plus what starting it costs besides: a
template to start, or a fresh process's share of its libraries), and the
current total is measured, not remembered.

Which model goes when one must: extra copies first, then idle shared
processes (a template with no worker), then a whole model, chosen by what it
would cost to bring it back (GreedyDual-Size-Frequency: reload seconds times
recent requests, per byte freed; the lowest goes, least recently used on a
tie). A model that loaded less than `min_stay_s` ago is not evicted to make
room for another load (it would be evicted before serving what it loaded
for); only a budget that is really exceeded takes it out. When every model
is busy, the one worth least is drained (`Drain`): it takes no new request and
goes once it has answered the ones it holds, so models take turns instead of
a steady stream to one of them starving the others.

Loads waiting for room stand in a line (`counts_against`): a load's
reservation counts against the loads behind it, never against those ahead,
so the load that has waited longest is the one the freed room goes to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MB = 2**20


@dataclass(frozen=True)
class Model:
    """A loaded model as the policy sees it."""

    name: str
    #: bytes it holds now by the budget's metric (all its copies), freshly measured
    held: int
    #: bytes ending it would give back (its private memory)
    frees: int
    #: ready, and no request inside or waiting for it
    evictable: bool
    last_used: float
    loaded_at: float
    #: seconds its last load took: what evicting it costs its next visitor
    reload_s: float = 1.0
    #: requests it answered in the recent window
    recent_uses: int = 0
    #: an extra copy not in a call, and what ending it would give back
    spare_copy: bool = False
    copy_frees: int = 0
    #: taking no new request, so that it can go (`Drain`)
    draining: bool = False
    #: its own minimum stay: twice what its last load cost in wall time (a template to
    #: start included), so a model that is costly to bring back is not sent away at once
    stay_s: float = 0.0


@dataclass(frozen=True)
class Shared:
    """A process kept besides the models (a framework template)."""

    name: str
    held: int
    #: no loaded or loading model needs it: ending it costs only a later start
    idle: bool


@dataclass(frozen=True)
class Snapshot:
    models: tuple[Model, ...]
    shared: tuple[Shared, ...] = ()
    #: bytes planned for loads in progress, not yet in any measurement above
    reserved: int = 0
    #: loads in progress (each takes a place among `max_models`)
    loading: int = 0
    now: float = 0.0
    #: loads of never-measured models waiting for room ahead of this one in line
    blind_ahead: int = 0

    @property
    def total(self) -> int:
        return sum(m.held for m in self.models) + sum(s.held for s in self.shared) + self.reserved

    @property
    def places(self) -> int:
        return len(self.models) + self.loading


@dataclass(frozen=True)
class Rules:
    max_models: int
    budget: int | None
    min_stay_s: float = 2.0
    #: how the model to evict is chosen: "cost" (below) or "lru" (least recently
    #: used, no stay: the rule before issue 29, kept to measure against)
    eviction: str = "cost"


EVICTION_RULES = ("cost", "lru")


# -- actions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fits:
    """Go ahead: the load fits, or the budget is held."""


@dataclass(frozen=True)
class ShrinkCopy:
    name: str


@dataclass(frozen=True)
class EndIdleShared:
    """End the shared processes no model needs (e.g. templates with no worker)."""


@dataclass(frozen=True)
class Evict:
    name: str
    reason: str  # "capacity" (the model count) or "memory"


@dataclass(frozen=True)
class Drain:
    """Every model is busy and one must go: `name` takes no new request, finishes
    the ones it holds, and then goes (so a stream to one model cannot starve
    another's visitors until their wait runs out)."""

    name: str


@dataclass(frozen=True)
class Wait:
    """Nothing can go now: wait for a model to become idle (or old enough), or,
    with `loads`, for that many other loads to be measured first."""

    busy: tuple[str, ...]
    loads: int = 0


@dataclass(frozen=True)
class OverBudget:
    """Over the budget with nothing left that may go: say so, serve anyway."""

    total: int


Action = Fits | ShrinkCopy | EndIdleShared | Evict | Drain | Wait | OverBudget


# -- decisions -----------------------------------------------------------------------------


def room_for(snap: Snapshot, need: int, rules: Rules, shared_tried: bool = False,
             need_known: bool = True) -> Action:
    """What to do before loading a model that will add `need` bytes.

    `shared_tried`: idle shared processes were already ended for this load
    (what is left of them is needed), so do not ask again. `need_known`: False
    for a model never measured (`need` is a guess): under a budget it waits
    for the loads in progress, whose measurements make the next guess better,
    instead of starting beside them blind, and for the never-measured loads
    ahead of it in line, so they start in the order they asked (first come,
    first loaded: otherwise whichever woke first went, and under a slow start
    the first to ask could wait out its deadline behind later ones)."""
    if not need_known and rules.budget is not None and (snap.loading or snap.blind_ahead):
        return Wait(tuple(sorted(m.name for m in snap.models)), loads=snap.loading + snap.blind_ahead)
    over_count = snap.places + 1 > rules.max_models
    over_memory = rules.budget is not None and snap.total + need > rules.budget
    if not over_count and not over_memory:
        return Fits()
    if over_memory and not over_count:
        freeable = _freeing_step(snap, shared_tried)
        if freeable is not None:
            return freeable
    victim = choose_victim(snap.models, snap.now, rules.min_stay_s, rule=rules.eviction)
    if victim is not None:
        return Evict(victim, "capacity" if over_count else "memory")
    if not over_count and not snap.models and not snap.loading:
        return Fits()  # alone and still too big: load it anyway; the budget reports it (OverBudget)
    if not any(m.draining for m in snap.models):
        busy = [replace(m, evictable=True) for m in snap.models if not m.evictable]
        drain = choose_victim(busy, snap.now, rules.min_stay_s, rule=rules.eviction)
        if drain is not None:
            return Drain(drain)
    return Wait(tuple(sorted(m.name for m in snap.models)))


def counts_against(other_line: int | None, my_line: int | None) -> bool:
    """Whether a reserved load (`other_line`: its place in the line for room,
    None once it has room and is starting) counts against the room of a load
    at `my_line` (None: the budget sweep, which holds what is measured).

    A starting load always counts: its memory is about to appear. A load still
    waiting for room counts only against the loads behind it in line; it holds
    no memory yet, so the sweep does not count it. Counted both ways, two loads
    that each hold a reservation the other needs wait on each other until both
    deadlines (a durian load and a cassava load, each having evicted one torch
    model under a budget that fits only one of their frameworks: issue 29's CI
    run of 2026-12-07)."""
    if other_line is None:
        return True
    return my_line is not None and other_line < my_line


def within_budget(snap: Snapshot, rules: Rules, keep: str | None = None,
                  shared_tried: bool = False) -> Action:
    """What to do when the measured total may be over the budget (after a
    load, or on the sweep). A real excess forces out even a fresh model, but
    never `keep` (the model that just loaded for its waiting requests)."""
    if rules.budget is None or snap.total <= rules.budget:
        return Fits()
    freeable = _freeing_step(snap, shared_tried)
    if freeable is not None:
        return freeable
    victim = choose_victim([m for m in snap.models if m.name != keep], snap.now, min_stay_s=0.0, forced=True,
                           rule=rules.eviction)
    if victim is not None:
        return Evict(victim, "memory")
    return OverBudget(snap.total)


def _freeing_step(snap: Snapshot, shared_tried: bool) -> Action | None:
    """The cheap ways to free memory, before any whole model: an idle extra
    copy (the biggest first), then idle shared processes."""
    spare = [m for m in snap.models if m.spare_copy]
    if spare:
        return ShrinkCopy(max(spare, key=lambda m: (m.copy_frees, m.name)).name)
    if not shared_tried and any(s.idle and s.held for s in snap.shared):
        return EndIdleShared()
    return None


def keep_value(m: Model) -> float:
    """What keeping `m` is worth per byte: the reload seconds its visitors
    would wait, times how often they ask (GreedyDual-Size-Frequency's F*C/S)."""
    return (m.reload_s + 0.05) * (1 + m.recent_uses) / max(m.frees, MB)


def choose_victim(models, now: float, min_stay_s: float, forced: bool = False, rule: str = "cost") -> str | None:
    """The evictable model worth least to keep (least recently used on a tie);
    models younger than their stay (`min_stay_s`, or their own `stay_s` if
    longer) are spared, unless the budget is really exceeded (`forced`).
    `rule="lru"`: the least recently used evictable model, stay or not."""
    if rule == "lru":
        candidates = [m for m in models if m.evictable]
        return min(candidates, key=lambda m: m.last_used).name if candidates else None
    candidates = [m for m in models if m.evictable and (forced or not _staying(m, now, min_stay_s))]
    if not candidates:
        return None
    return min(candidates, key=lambda m: (keep_value(m), m.last_used)).name


def _staying(m: Model, now: float, min_stay_s: float) -> bool:
    """Within its stay (`min_stay_s`, or its own `stay_s` if longer) and still asked
    for: a model nobody asked for in `min_stay_s` has served what it loaded for."""
    return now - m.loaded_at < max(min_stay_s, m.stay_s) and now - m.last_used < max(min_stay_s, 1.0)


def load_need(peak_private: int | None, start_cost: int, known_peaks: list[int]) -> int:
    """Bytes a load will add: the model's largest private size seen (a model
    never seen is planned at the largest any model has had), plus what starting
    it costs besides."""
    own = peak_private if peak_private else max(known_peaks, default=0)
    return own + start_cost


# -- CPU threads, copies and back-off -------------------------------------------------
# The rest of the registry's rules, each a function of a few numbers.

#: a copy that failed to start is not tried again for this long (its model keeps serving)
COPY_RETRY_S = 60.0


def mean_call_s(calls: int, seconds_total: float) -> float | None:
    """A model's mean call time so far; None before its first call."""
    return seconds_total / calls if calls else None


def threads_for(fixed: int | None, mean_s: float | None, short_call_s: float, cores: int, running: int) -> int:
    """CPU threads for a call about to start. `fixed` (--worker-threads) wins; a
    model whose calls are known to be short gets one (a second thread would cost
    more CPU than the time it saves); otherwise the `running` calls (this one
    included) split the cores, so their thread pools do not spin against each other."""
    if fixed:
        return fixed
    if mean_s is not None and mean_s < short_call_s:
        return 1
    return max(1, cores // max(1, running))


def copy_pays(mean_s: float | None, min_call_s: float) -> bool:
    """Whether a waiting request waits long enough for another copy to pay: a
    model whose calls are short drains its queue sooner than another process
    earns back the CPU it takes from the others. Unknown before the first call."""
    return mean_s is not None and mean_s >= min_call_s


def copy_fits(budget: int | None, held: int, one_copy: int) -> bool:
    """Whether one more copy (`one_copy` bytes) fits beside the `held` total."""
    return budget is None or held + one_copy <= budget


def copies_allowed(max_batch: int, demo_most: int | None, hub_most: int) -> int:
    """How many copies of a model may run: the hub's most, lowered by the demo's
    own. A batching demo keeps one: its concurrent requests share a call instead
    (demohub/batching.py)."""
    if max_batch > 1:
        return 1
    return max(1, min(demo_most or hub_most, hub_most))


def extra_copy_threads(cores: int, max_copies: int) -> int:
    """Threads an extra copy starts with: it exists because calls run at once, so
    it takes its share of the cores, not all of them (TensorFlow fixes its pool
    at start)."""
    return max(1, cores // max(1, max_copies))


def retry_after(failures: int, first_s: float, cap_s: float) -> float:
    """Seconds before a model that failed to load `failures` times in a row is
    tried again: doubling from `first_s`, at most `cap_s`."""
    return min(cap_s, first_s * 2 ** max(0, failures - 1))


# -- Ray replicas ----------------------------------------------------------------------


def ray_cpus_per_replica(asked: float, cores: float, max_models: int | None, max_replicas: int) -> float:
    """CPUs each replica asks Ray for. On a Ray of this machine alone (no
    autoscaler), `max_models` demos of `max_replicas` each must fit its cores, or
    the last one to load waits for a CPU until its load deadline: each asks for a
    share of a core instead (in hundredths, at least 0.01). `max_models` None: a
    cluster that scales, ask for `asked`."""
    if not max_models:
        return asked
    share = math.floor(100 * cores / max(1, max_models * max_replicas)) / 100
    return max(0.01, min(asked, share))


def threads_on_replica(granted: int | None, replica_cpus: float) -> int | None:
    """The registry grants threads by this machine's cores; a replica holds
    `replica_cpus` of its node: never more threads than that, rounded up."""
    return max(1, min(granted, math.ceil(replica_cpus))) if granted else granted


def scale_to_zero_after(idle_ttl_s: float | None) -> float | None:
    """When Serve itself scales an idle demo to zero: the hub deletes an idle
    application after its TTL, so this only matters if the hub went away first;
    well after the hub's own rule (None: the demo stays, as the hub keeps it)."""
    return 2 * idle_ttl_s + 60.0 if idle_ttl_s else None
