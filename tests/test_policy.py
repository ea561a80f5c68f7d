"""The registry's decisions as tables (demohub/policy.py): no process starts here."""

from __future__ import annotations

from dataclasses import replace

import pytest

from demohub import policy
from demohub.policy import (Drain, EndIdleShared, Evict, Fits, Model, OverBudget, Rules, Shared, ShrinkCopy, Snapshot,
                            Wait, choose_victim, load_need, room_for, within_budget)

MB = 2**20
NOW = 1000.0


def model(name, held=200, frees=None, evictable=True, last_used=NOW - 10, age=60.0, reload_s=0.1, uses=0,
          spare=False, draining=False) -> Model:
    frees = held if frees is None else frees
    return Model(name, held * MB, frees * MB, evictable, last_used, NOW - age, reload_s, uses,
                 spare_copy=spare, copy_frees=(frees // 2) * MB if spare else 0, draining=draining)


def snap(*models, shared=(), reserved=0, loading=0, blind_ahead=0) -> Snapshot:
    return Snapshot(tuple(models), tuple(shared), reserved * MB, loading, NOW, blind_ahead)


ROOM_TABLE = [
    # (what, snapshot, need MB, rules, expected)
    ("empty hub, no budget", snap(), 300, Rules(3, None), Fits()),
    ("fits the count and the budget", snap(model("a")), 300, Rules(3, 1000 * MB), Fits()),
    ("count full: the idle model goes", snap(model("a")), 10, Rules(1, None), Evict("a", "capacity")),
    ("count full, model busy: it is drained", snap(model("a", evictable=False)), 10, Rules(1, None), Drain("a")),
    ("one already draining: wait", snap(model("a", evictable=False, draining=True)), 10, Rules(1, None),
     Wait(("a",))),
    ("a busy fresh model is not drained", snap(model("a", evictable=False, age=0.5, last_used=NOW)), 10, Rules(1, None),
     Wait(("a",))),
    ("busy models: the one worth least is drained",
     snap(model("durian", evictable=False, reload_s=3.0), model("questions", evictable=False, reload_s=0.1)), 10,
     Rules(2, None), Drain("questions")),
    ("over memory: an idle extra copy goes before any model",
     snap(model("a", held=600, spare=True), model("b", held=300)), 300, Rules(3, 1000 * MB), ShrinkCopy("a")),
    ("over memory: an idle template goes before any model",
     snap(model("a"), shared=[Shared("template tensorflow", 500 * MB, idle=True)]), 400, Rules(3, 1000 * MB),
     EndIdleShared()),
    ("templates already tried: then a model",
     snap(model("a"), shared=[Shared("template tensorflow", 500 * MB, idle=True)]), 400, Rules(3, 1000 * MB),
     Evict("a", "memory")),
    ("a template in use is not idle", snap(model("a"), shared=[Shared("template torch", 500 * MB, idle=False)]),
     400, Rules(3, 1000 * MB), Evict("a", "memory")),
    ("loads in progress count at their need", snap(model("a", held=300), reserved=500, loading=1), 300,
     Rules(3, 1000 * MB), Evict("a", "memory")),
    ("loads in progress take a place", snap(loading=1), 10, Rules(1, None), Wait(())),
    ("a fresh model still asked for stays its minimum", snap(model("a", age=1.0, last_used=NOW - 0.5)), 10,
     Rules(1, None, min_stay_s=2.0), Wait(("a",))),
    ("a fresh model nobody asks for any more goes", snap(model("a", age=1.0, last_used=NOW - 5)), 10,
     Rules(1, None, min_stay_s=2.0), Evict("a", "capacity")),
    ("alone and too big: load anyway", snap(), 5000, Rules(3, 1000 * MB), Fits()),
    ("over memory, two idle models alike: the least recently used goes",
     snap(model("a", held=300, frees=100), model("b", held=300, frees=100, last_used=NOW - 1)), 500,
     Rules(3, 1000 * MB), Evict("a", "memory")),
]


@pytest.mark.parametrize("what,snapshot,need,rules,expected", ROOM_TABLE, ids=[r[0] for r in ROOM_TABLE])
def test_room_for(what, snapshot, need, rules, expected):
    shared_tried = what.startswith("templates already tried")
    assert room_for(snapshot, need * MB, rules, shared_tried) == expected


@pytest.mark.parametrize("budget,loading,blind_ahead,need_known,expected", [
    (1000 * MB, 1, 0, False, Wait((), loads=1)),  # a blind guess waits for the load in progress to be measured
    (1000 * MB, 0, 0, False, Fits()),
    (1000 * MB, 0, 1, False, Wait((), loads=1)),  # and for the blind loads that asked before it
    (1000 * MB, 1, 2, False, Wait((), loads=3)),
    (1000 * MB, 0, 1, True, Fits()),  # a measured model plans by its size: nothing to wait for
    (None, 1, 1, False, Fits()),  # without a budget nothing is planned by size
])
def test_a_model_never_measured_loads_alone_and_in_turn_under_a_budget(budget, loading, blind_ahead, need_known,
                                                                        expected):
    got = room_for(snap(loading=loading, blind_ahead=blind_ahead), 100 * MB, Rules(3, budget), need_known=need_known)
    assert got == expected


@pytest.mark.parametrize("other,me,counts", [
    (None, None, True),  # a load starting counts in the budget sweep (its memory is about to appear)
    (None, 3, True),  # ... and against every load waiting for room
    (2, 3, True),  # a load ahead in line counts against one behind it
    (3, 2, False),  # ... not the other way round
    (5, None, False),  # a load waiting for room holds no memory: the sweep does not count it
])
def test_counts_against(other, me, counts):
    assert policy.counts_against(other, me) is counts


def test_two_loads_each_holding_the_room_the_other_needs_do_not_wait_on_each_other():
    """The CI failure of 2026-12-07 as numbers: under 1000 MB, durian (TensorFlow
    template and worker, 650 MB) and cassava (torch template and worker, 450 MB)
    each evicted a model and hold a reservation; nothing is loaded. Counting each
    other's reservation, both waited until durian's deadline; with the line, the
    load ahead is served and the other keeps waiting for it."""
    rules, line = Rules(3, 1000 * MB), {"durian": (1, 650), "cassava": (2, 450)}

    def view(me: str) -> Snapshot:
        others = [(place, need) for name, (place, need) in line.items() if name != me]
        counted = [need for place, need in others if policy.counts_against(place, line[me][0])]
        return snap(reserved=sum(counted), loading=len(counted))

    assert room_for(snap(reserved=450, loading=1), 650 * MB, rules) == Wait(())  # what each saw before
    assert room_for(snap(reserved=650, loading=1), 450 * MB, rules) == Wait(())
    assert room_for(view("durian"), 650 * MB, rules) == Fits()
    assert room_for(view("cassava"), 450 * MB, rules) == Wait(())


BUDGET_TABLE = [
    ("under: nothing to do", snap(model("a", held=400)), None, Rules(3, 1000 * MB), Fits()),
    ("no budget", snap(model("a", held=4000)), None, Rules(3, None), Fits()),
    ("over: extra copy first", snap(model("a", held=700, spare=True), model("b", held=400)), None,
     Rules(3, 1000 * MB), ShrinkCopy("a")),
    ("over: idle template next", snap(model("a", held=700), shared=[Shared("template torch", 400 * MB, True)]),
     None, Rules(3, 1000 * MB), EndIdleShared()),
    ("over: a fresh model goes too (memory forces it)", snap(model("a", held=700, age=0.1), model("b", held=400)),
     "b", Rules(3, 1000 * MB, min_stay_s=5.0), Evict("a", "memory")),
    ("over: never the model that just loaded", snap(model("a", held=1200)), "a", Rules(3, 1000 * MB),
     OverBudget(1200 * MB)),
    ("over, everything busy", snap(model("a", held=700, evictable=False), model("b", held=400, evictable=False)),
     None, Rules(3, 1000 * MB), OverBudget(1100 * MB)),
]


@pytest.mark.parametrize("what,snapshot,keep,rules,expected", BUDGET_TABLE, ids=[r[0] for r in BUDGET_TABLE])
def test_within_budget(what, snapshot, keep, rules, expected):
    assert within_budget(snapshot, rules, keep) == expected


VICTIM_TABLE = [
    ("least recently used on a tie", [model("a", last_used=NOW - 5), model("b", last_used=NOW - 50)], "b"),
    ("costly to reload stays: durian over questions",
     [model("durian", reload_s=1.0, last_used=NOW - 50), model("questions", reload_s=0.1, last_used=NOW - 5)],
     "questions"),
    ("asked for often stays",
     [model("a", uses=30, last_used=NOW - 50), model("b", uses=0, last_used=NOW - 5)], "b"),
    ("a bigger model frees more per reload second",
     [model("small", held=50, last_used=NOW - 50), model("big", held=500, last_used=NOW - 5)], "big"),
    ("busy models are never chosen", [model("a", evictable=False), model("b", evictable=False)], None),
    ("fresh models still asked for are spared",
     [model("a", held=500, age=0.5, last_used=NOW - 0.2), model("b", age=60, last_used=NOW - 1)], "b"),
    ("the same model when no longer fresh", [model("a", held=500, age=60, last_used=NOW - 0.2),
                                             model("b", age=60, last_used=NOW - 1)], "a"),
    ("a model costly to bring back stays longer",
     [replace(model("a", held=500, age=10, last_used=NOW - 0.5), stay_s=16.0),
      model("b", age=60, last_used=NOW - 1)], "b"),
]


@pytest.mark.parametrize("what,models,expected", VICTIM_TABLE, ids=[r[0] for r in VICTIM_TABLE])
def test_choose_victim(what, models, expected):
    assert choose_victim(models, NOW, min_stay_s=2.0) == expected


@pytest.mark.parametrize("peak,start,known,expected", [
    (300, 0, [300, 100], 300),  # seen before: its own peak
    (None, 0, [300, 100], 300),  # never seen: planned at the largest any model has had
    (None, 0, [], 0),  # the first load of all: nothing else to make room from
    (100, 450, [100], 550),  # its template must start first
])
def test_load_need(peak, start, known, expected):
    assert load_need(peak and peak * MB, start * MB, [k * MB for k in known]) == expected * MB


# -- CPU threads, copies, back-off ---------------------------------------------------

@pytest.mark.parametrize("what,fixed,mean_s,cores,running,expected", [
    ("--worker-threads wins", 3, 0.001, 8, 4, 3),
    ("alone, calls unknown yet: every core", None, None, 4, 1, 4),
    ("alone, long calls: every core", None, 0.2, 4, 1, 4),
    ("short calls: one thread even alone", None, 0.007, 4, 1, 1),
    ("two running split the cores", None, 0.2, 4, 2, 2),
    ("more running than cores: still one", None, 0.2, 2, 5, 1),
    ("nothing counted as running (a staged call) is the caller alone", None, 0.2, 4, 0, 4),
])
def test_threads_for(what, fixed, mean_s, cores, running, expected):
    assert policy.threads_for(fixed, mean_s, 0.05, cores, running) == expected


@pytest.mark.parametrize("calls,total,min_call_s,expected", [
    (0, 0.0, 0.05, False),  # no call yet: unknown, no copy
    (10, 0.07, 0.05, False),  # 7 ms calls drain a queue faster than a copy starts
    (10, 2.0, 0.05, True),  # 200 ms calls: a waiting request waits long enough
    (1, 0.05, 0.05, True),  # at the threshold
])
def test_copy_pays(calls, total, min_call_s, expected):
    assert policy.copy_pays(policy.mean_call_s(calls, total), min_call_s) is expected


@pytest.mark.parametrize("budget,held,one,expected", [
    (None, 10**12, 10**12, True),  # no budget
    (1000, 600, 400, True),
    (1000, 601, 400, False),
])
def test_copy_fits(budget, held, one, expected):
    assert policy.copy_fits(budget, held, one) is expected


@pytest.mark.parametrize("max_batch,demo_most,hub_most,expected", [
    (1, None, 4, 4),  # the hub's most
    (1, 2, 4, 2),  # the demo asks for fewer
    (1, 8, 4, 4),  # a demo cannot ask for more than the hub allows
    (32, None, 4, 1),  # a batching demo keeps one: its requests share a call
    (1, None, 0, 1),  # always at least one
])
def test_copies_allowed(max_batch, demo_most, hub_most, expected):
    assert policy.copies_allowed(max_batch, demo_most, hub_most) == expected


@pytest.mark.parametrize("cores,copies,expected", [(2, 2, 1), (8, 2, 4), (2, 4, 1), (4, 1, 4)])
def test_extra_copy_threads(cores, copies, expected):
    assert policy.extra_copy_threads(cores, copies) == expected


@pytest.mark.parametrize("failures,expected", [(1, 2.0), (2, 4.0), (3, 8.0), (8, 256.0), (9, 300.0), (40, 300.0)])
def test_retry_after_doubles_up_to_its_cap(failures, expected):
    assert policy.retry_after(failures, 2.0, 300.0) == expected


@pytest.mark.parametrize("what,models,expected", [
    ("the least recently used goes, however costly to reload",
     [model("durian", reload_s=30.0, last_used=NOW - 50), model("questions", reload_s=0.1, last_used=NOW - 5)],
     "durian"),
    ("a fresh load still asked for is not spared",
     [model("a", age=0.5, last_used=NOW - 0.4), model("b", age=60, last_used=NOW - 0.2)], "a"),
    ("busy models are never chosen", [model("a", evictable=False), model("b", evictable=False)], None),
])
def test_choose_victim_by_lru_the_rule_before(what, models, expected):
    assert choose_victim(models, NOW, min_stay_s=2.0, rule="lru") == expected


def test_room_for_uses_the_rules_eviction():
    fresh = model("fresh", age=0.5, last_used=NOW - 0.4)
    old = model("old", age=60, last_used=NOW - 0.2)
    both = snap(fresh, old)
    assert room_for(both, 0, Rules(max_models=2, budget=None)) == Evict("old", "capacity")
    assert room_for(both, 0, Rules(max_models=2, budget=None, eviction="lru")) == Evict("fresh", "capacity")


@pytest.mark.parametrize("asked,cores,max_models,replicas,expected", [
    (1.0, 2, 3, 1, 0.66),  # three demos on a 2-core local Ray: two thirds of a core each
    (1.0, 2, 4, 1, 0.5),
    (1.0, 8, 2, 1, 1.0),  # room enough: what was asked
    (1.0, 2, 2, 2, 0.5),  # two replicas each
    (1.0, 2, 500, 1, 0.01),  # never below a hundredth
    (1.0, 2, None, 1, 1.0),  # a cluster that scales: what was asked
])
def test_ray_cpus_per_replica(asked, cores, max_models, replicas, expected):
    assert policy.ray_cpus_per_replica(asked, cores, max_models, replicas) == expected


@pytest.mark.parametrize("granted,cpus,expected", [(4, 0.66, 1), (4, 2.0, 2), (1, 4.0, 1), (None, 1.0, None)])
def test_threads_on_replica(granted, cpus, expected):
    assert policy.threads_on_replica(granted, cpus) == expected


@pytest.mark.parametrize("ttl,expected", [(900.0, 1860.0), (3.0, 66.0), (None, None), (0.0, None)])
def test_scale_to_zero_after(ttl, expected):
    assert policy.scale_to_zero_after(ttl) == expected
