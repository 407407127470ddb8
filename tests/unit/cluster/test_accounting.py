from instructflow.cluster.accounting import Progress, collect, quotas


def progress(**counters):
    p = Progress(targets={"a": 100})
    for key, value in counters.items():
        getattr(p, key).update(value)
    return p


def test_fresh_run_asks_for_the_whole_target():
    assert quotas(progress(), {"a": 1}) == {"a": 100}


def test_quota_splits_over_replicas_and_counts_what_is_in_flight():
    p = progress(accepted={"a": 40}, generated={"a": 60}, resolved={"a": 40}, queue_depths={"novelty": 20})
    # 20 in flight at yield ~1 -> 40 still missing, split over 2 replicas
    assert quotas(p, {"a": 2}) == {"a": 20}


def test_low_yield_asks_for_more_and_in_flight_is_bounded_by_what_the_pipeline_holds():
    p = progress(accepted={"a": 10}, generated={"a": 100}, resolved={"a": 40})
    assert p.in_flight("a") == 60  # may be in transit between actors: still counted
    # once the driver has seen the pipeline empty for a while, they are written off as lost
    p.assume_lost = True
    assert p.in_flight("a") == 0
    # yield (10+4)/(40+4); 90 rows missing -> ceil(90 / 0.318) candidates
    assert quotas(p, {"a": 1}) == {"a": 283}


def test_writer_surplus_does_not_lower_the_yield():
    p = progress(accepted={"a": 10}, generated={"a": 30}, resolved={"a": 30}, surplus={"a": 20})
    assert p.yield_rate("a") == 1.0


def test_done_targets_get_no_quota():
    p = progress(accepted={"a": 100}, committed={"a": 100})
    assert quotas(p, {"a": 1}) == {"a": 0} and p.all_done()


def test_collect_sums_actor_stats():
    p = collect(
        {"a": 10, "b": 5},
        writer={"accepted": {"a": 3}, "committed": {"a": 2}, "skipped": {"over_target": 1}, "skipped_by_category": {"b": 1}},
        instructors=[
            {"category": "a", "generated": 8, "dropped": {"no_response": 1}, "failures": {"timeout": 2}, "held": 1,
             "teacher": {"usage": {"prompt_tokens": 10, "completion_tokens": 5}, "failures": {"timeout": 2}},
             "outcome": None},
            {"category": "b", "generated": 4, "dropped": {}, "failures": {}, "held": 0, "teacher": None, "outcome": "budget"},
        ],
        workers=[{"rejected": {"a": 2}, "reasons": {"near_duplicate": 2}, "held": 0}],
        judges=[{"rejected": {"b": 1}, "reasons": {"refusal": 1}, "held": 2, "teacher": None, "fatal": None}],
        queues=[{"name": "novelty", "depth": 3}],
    )
    assert p.generated == {"a": 8, "b": 4}
    assert p.resolved == {"a": 3 + 1 + 2, "b": 1 + 1}
    assert p.rejects["novelty:near_duplicate"] == 2 and p.rejects["judge:refusal"] == 1
    assert p.held == 3 and p.pipeline_items == 6
    assert p.prompt_tokens == 10 and p.outcomes == ["budget"]
    assert p.in_flight("a") == 2
    p.assume_lost = True
    assert p.in_flight("a") == 2  # the pipeline holds 6, so the 2 are plausibly there


def test_answers_parked_for_a_finished_category_do_not_hide_lost_candidates():
    p = Progress(targets={"a": 10, "b": 10})
    p.committed.update({"a": 10, "b": 6})
    p.queue_depths.update({"answer:a": 7, "answer:b": 0, "novelty": 0})
    # a met its target: its instructors stopped, so its queued answers will never move
    assert p.pipeline_items == 0
    p.queue_depths["answer:b"] = 2
    assert p.pipeline_items == 2
