from collections import Counter

from instructflow.actors.core.ledger import TARGET_MET, Ledger
from instructflow.cluster.accounting import LossEstimator, Progress, Watchdog, quotas


def progress(generated=0, accepted=0, rejected=0, dropped=None, visible=0, committed=0, novel=0, target=100):
    books = Ledger(generated=Counter({"a": generated}), accepted=Counter({"a": accepted}))
    books.rejected[("a", "novelty:near_duplicate")] = rejected
    books.dropped.update({("a", r): n for r, n in (dropped or {}).items()})
    books.passed[("novelty", "a")] = novel
    p = Progress(targets={"a": target}, books=books)
    p.accepted["a"] = accepted
    p.committed["a"] = committed
    p.visible["a"] = visible
    return p


def test_fresh_run_asks_for_the_whole_target():
    assert quotas(progress(), {"a": 1}) == {"a": 100}


def test_quota_splits_over_replicas_and_counts_what_is_in_flight():
    p = progress(generated=60, accepted=40, visible=20)
    # 20 in flight at yield ~1 -> 40 still missing, split over 2 replicas
    assert quotas(p, {"a": 2}) == {"a": 20}


def test_low_yield_asks_for_more_and_surplus_drops_do_not_lower_the_yield():
    p = progress(generated=100, accepted=10, rejected=30, visible=60)
    assert p.in_flight("a") == 60
    assert quotas(p, {"a": 1}) == {"a": 223}  # ceil((100 - 10 - 60 * 14/44) / (14/44))
    q = progress(generated=100, accepted=10, rejected=30, dropped={TARGET_MET: 50}, visible=10)
    assert q.yield_rate("a") == p.yield_rate("a")


def test_a_shortfall_that_persists_is_counted_as_lost_and_made_up():
    est = LossEstimator(ticks=3)
    # 100 generated, 40 decided, 50 visible: 10 unexplained (in transit, or lost in a restart)
    samples = [progress(generated=100, accepted=40, visible=v) for v in (45, 50, 50, 50)]
    for p in samples[:2]:
        est.update(p)
        assert p.lost["a"] == 0  # not yet believed
    est.update(samples[2])
    assert samples[2].lost["a"] == 10  # min(15, 10, 10)
    est.update(samples[3])
    assert samples[3].in_flight("a") == 50
    assert quotas(samples[3], {"a": 1}) == {"a": 10}  # without the estimate the quota would be 0


def test_watchdog_gives_up_a_category_that_does_not_move():
    dog = Watchdog(stall_timeout_s=120, window=400, min_novel_share=0.02)
    p = progress(generated=50, accepted=20, visible=0, rejected=30)
    assert dog.check(p, now=0) == {}
    assert dog.check(p, now=119) == {}
    moved = progress(generated=55, accepted=20, visible=5, rejected=30)
    assert dog.check(moved, now=119.5) == {}  # it moved: the clock starts again
    verdict = dog.check(moved, now=240)
    assert verdict["a"].startswith("a: no progress for 120 s (quota 0, 0 calls in flight")


def test_watchdog_gives_up_a_category_whose_novelty_is_saturated():
    dog = Watchdog(stall_timeout_s=1e9, window=400, min_novel_share=0.02)
    for t, (decided, novel) in enumerate([(0, 0), (200, 150), (400, 300), (600, 302), (800, 303)]):
        verdict = dog.check(progress(generated=decided, rejected=decided - novel, novel=novel), now=t)
    assert verdict == {"a": "a: novelty saturated: 3 of the last 400 candidates were novel"}
    healthy = Watchdog(stall_timeout_s=1e9, window=400, min_novel_share=0.02)
    for decided in range(0, 2000, 100):
        assert healthy.check(progress(generated=decided, rejected=decided // 2, novel=decided // 2), now=0) == {}


def test_settled_categories_are_never_given_up():
    dog = Watchdog(stall_timeout_s=1, window=10, min_novel_share=0.5)
    done = progress(generated=100, accepted=100, committed=100)
    dog.check(done, now=0)
    assert dog.check(done, now=100) == {}
