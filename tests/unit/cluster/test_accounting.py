import math
from collections import Counter

from instructflow.actors.core.ledger import TARGET_MET, Ledger
from instructflow.cluster.accounting import LossEstimator, Progress, Watchdog, caps, quotas, split


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
    p = progress(generated=100, accepted=10, rejected=30, visible=60, novel=70)
    assert p.in_flight("a") == 60
    assert p.yield_rate("a") == 74 / 104  # the novelty stage passed 70 of 100 (prior: 4 more passes)
    assert quotas(p, {"a": 1}) == {"a": 67}  # ceil((100 - 10 - 60 * 74/104) / (74/104))
    q = progress(generated=100, accepted=10, rejected=30, dropped={TARGET_MET: 50}, visible=10, novel=70)
    assert q.yield_rate("a") == p.yield_rate("a")


def test_early_duplicates_do_not_read_as_a_collapse_in_yield():
    # 15 duplicates found before any row is accepted: the yield is that of the novelty stage alone.
    p = progress(generated=100, accepted=0, rejected=15, visible=85, novel=85)
    assert p.yield_rate("a") == (85 + 4) / (100 + 4)
    assert quotas(p, {"a": 1})["a"] == 32  # ceil((100 - 85 * 0.856) / 0.856), not 400 as at 15/19


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


def stats(generated_total=0, answers_started=0, answering=0):
    from instructflow.actors.core.producer import ProducerStats

    return ProducerStats(category="a", held=0, calls_in_flight=0, answering=answering, quota=0, failures={},
                         outcome=None, generating=True, generated_total=generated_total,
                         answers_started=answers_started)


def test_answers_needed_counts_what_is_already_on_its_way():
    p = progress(generated=60, accepted=40, visible=20)
    p.answering["a"], p.downstream["a"] = 15, 25
    assert p.answers_needed("a") == 20  # 100 - 40 accepted - 40 on the way, at yield 1
    p.books.rejected[("a", "judge:llm_low_score")] = 36  # a judge that keeps 40 of 76
    rate = p.answer_yield("a")
    assert rate == (40 + 4) / (40 + 36 + 4)
    assert p.answers_needed("a") == math.ceil((100 - 40 - 40 * rate) / rate)
    p.books.rejected[("a", "writer:over_target")] = 50  # surplus says nothing about the yield
    assert p.answer_yield("a") == rate


def test_caps_are_running_totals_and_split_the_answers_exactly():
    p = progress(generated=60, accepted=90, visible=5)
    p.producers["a"] = [stats(generated_total=30, answers_started=40), stats(generated_total=30, answers_started=45)]
    p.answering["a"] = 3
    # 100 - 90 - 3 on the way = 7 answers: 4 + 3, on top of what each replica already started.
    got = caps(p, {"a": 2})
    assert [answer for _, answer in got["a"]] == [44, 48]
    quota = quotas(p, {"a": 2})["a"]
    assert [generate for generate, _ in got["a"]] == [30 + quota, 30 + quota]


def test_a_met_target_allows_no_answer_at_all():
    p = progress(generated=120, accepted=100, visible=20, target=100)
    p.producers["a"] = [stats(answers_started=110)]
    assert caps(p, {"a": 1})["a"] == [(0 + quotas(p, {"a": 1})["a"], 110)]
    assert split(7, 3) == [3, 2, 2] and split(0, 2) == [0, 0]


def test_cost_per_row_against_the_rows_own_tokens():
    from instructflow.cluster.accounting import Cost

    p = progress(generated=120, accepted=100)
    p.prompt_tokens, p.completion_tokens = 80_000, 40_000
    p.kept_tokens.update({"a": 96_000})
    p.usd = 0.6
    cost = Cost.of(p, rows=100)
    assert (cost.per_row, cost.minimum_per_row, cost.usd_per_row) == (1200, 960, 0.006)
    assert abs(cost.wasted_share - 0.2) < 1e-9
    assert cost.line() == "1,200 tokens/row (the rows' own: 960; 20.0% went to rejected or surplus work) · $0.00600/row"
    p.usd = None
    assert "$" not in Cost.of(p, rows=100).line() and Cost.of(p, rows=0).line() == "120,000 tokens, no row yet"


def test_cost_prefers_the_limiters_count_and_reads_well_without_one():
    from instructflow.cluster.accounting import Cost

    p = progress(generated=10, accepted=10)
    p.kept_tokens.update({"a": 900})
    assert Cost.of(p, rows=10).line() == "the rows' own tokens: 90/row"  # instructors restarted, counts at 0
    p.spent_tokens = 1000  # the limiter outlives them
    assert Cost.of(p, rows=10).per_row == 100
