"""Which prior studies the catalog offers a new study, and why it leaves others out."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from gridpoint.node.catalog import publish
from gridpoint.node.home import NodeHome
from gridpoint.node.store.query_filter import parse_order_by
from gridpoint.node.store.sql_store import SqlStore, open_store
from gridpoint.node.tuning import warm_start
from gridpoint.node.tuning.warm_start import choose_priors, released_noise
from gridpoint.schema import BaseModelInfo, PrivacyGuarantee, RunRecord, TaskDescriptor
from gridpoint.trainers.privacy.accounting import release_noise
from tests.helpers import MakeHome, make_record


def test_a_study_that_fine_tuned_another_way_is_left_out_with_the_reason(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: one signer's three studies of the same task and model, fine-tuned in full,
    # with LoRA and the head alone.
    home = make_home("A")
    for method in ("full", "lora", "head"):
        for i in range(3):
            record = make_record(i, accuracy=0.6 + i / 10)
            publish(
                store,
                home.identity,
                replace(
                    record,
                    study=f"study{method}",
                    model=BaseModelInfo("bert-base-uncased", "bert", method=method),
                    objective_metric="accuracy",
                    objective_direction="maximize",
                ),
            )
    task = TaskDescriptor("text-classification")
    # Execute
    lora = choose_priors(store, task=task, objective_metric="accuracy", method="lora")
    every = choose_priors(store, task=task, objective_metric="accuracy")
    # Assert: a LoRA study is offered the LoRA prior; the others are left out, saying why.
    assert [len(p.trials) for p in lora.priors] == [3]
    assert [lora.sources[p.label].study for p in lora.priors] == ["studylora"]
    reasons = {source.study: reason for source, reason in lora.left_out}
    assert reasons == {
        "studyfull": "fine-tuned 'full', this study 'lora'",
        "studyhead": "fine-tuned 'head', this study 'lora'",
    }
    # Without a method (a team's own Optuna code that does not say), every study is offered.
    assert len(every.priors) == 3 and every.left_out == []


def test_a_prior_with_another_number_of_labels_gives_its_values_but_not_its_curves(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: a 2-label study's trials, each with its accuracy curve.
    home = make_home("A")
    for i in range(3):
        record = make_record(i, accuracy=0.6 + i / 10)
        publish(store, home.identity, replace(record, study="studybinary"))
    two, four = (
        TaskDescriptor("text-classification", num_labels=n, size_bucket="1k-10k", language="en")
        for n in (2, 4)
    )
    # Execute
    same = choose_priors(store, task=two, objective_metric="accuracy")
    other = choose_priors(store, task=four, objective_metric="accuracy")
    # Assert: a 2-label study's curves are offered to 2-label studies only (a 4-label study's
    # accuracy starts and climbs on another scale, so its curve pruner must not read them);
    # its values inform both.
    assert [len(t.curve) for t in same.priors[0].trials] == [2, 2, 2]
    assert [t.curve for t in other.priors[0].trials] == [(), (), ()]
    assert sorted(t.value for t in other.priors[0].trials) == [0.6, 0.7, 0.8]
    assert other.priors[0].similarity < same.priors[0].similarity


def _publish_study(store: SqlStore, home: NodeHome, study: str, trials: int, **change: Any) -> None:
    for i in range(trials):
        record = make_record(i, accuracy=0.6 + i / 100)
        publish(store, home.identity, replace(record, study=study, **change))


def test_the_most_alike_studies_are_weighed_no_signer_pushing_the_others_out(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: A publishes four studies, two of them on French text (less alike an English
    # task); B one study of one trial.
    a, b = make_home("A"), make_home("B")
    english = TaskDescriptor("text-classification", 2, "1k-10k", language="en")
    french = replace(english, language="fr")
    _publish_study(store, a, "aenlarge", 3)
    _publish_study(store, a, "aensmall", 2)
    _publish_study(store, a, "afrench1", 2, task=french)
    _publish_study(store, a, "afrench2", 2, task=french)
    _publish_study(store, b, "benglish", 1)
    names = {a.identity.node_id: "Alpha", b.identity.node_id: "Beta"}
    # Execute: a warm start that weighs at most three studies.
    choice = choose_priors(
        store, task=english, objective_metric="accuracy", names=names, max_studies=3
    )
    # Assert: the English studies are weighed; A's French ones are left out together, in one
    # row that counts them and their trials under A's name.
    kept = sorted(choice.sources[p.label].study for p in choice.priors)
    assert kept == ["aenlarge", "aensmall", "benglish"]
    [(source, reason)] = choice.left_out
    assert (source.label, source.signer, source.study, source.trials) == (
        "2 studies@Alpha",
        a.identity.node_id,
        "",
        4,
    )
    assert reason == "beyond the 3 prior studies a warm start weighs"
    # With room for two, B's one-trial study keeps its place beside A's best, though A's
    # second study is larger: one signer's many studies never push the others out.
    two = choose_priors(store, task=english, objective_metric="accuracy", max_studies=2)
    assert sorted(two.sources[p.label].study for p in two.priors) == ["aenlarge", "benglish"]
    assert [(s.signer, s.trials, r) for s, r in two.left_out] == [
        (a.identity.node_id, 6, "beyond the 2 prior studies a warm start weighs")
    ]


def test_a_signers_studies_left_out_for_one_reason_share_one_row(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: A's three LoRA studies and one study that fine-tuned the head alone.
    a = make_home("A")
    for study in ("loraone1", "loratwo2", "lorathree"):
        _publish_study(store, a, study, 2, model=BaseModelInfo("bert-base", "bert", method="lora"))
    _publish_study(store, a, "headonly", 1, model=BaseModelInfo("bert-base", "bert", method="head"))
    # Execute: a full fine-tune's warm start.
    choice = choose_priors(
        store,
        task=TaskDescriptor("text-classification"),
        objective_metric="accuracy",
        method="full",
    )
    # Assert: one row for the three LoRA studies, one for the head-only study as itself.
    assert choice.priors == []
    assert sorted((s.label.split("@")[0], s.trials, r) for s, r in choice.left_out) == [
        ("3 studies", 6, "fine-tuned 'lora', this study 'full'"),
        ("headonly", 1, "fine-tuned 'head', this study 'full'"),
    ]


def test_a_private_prior_whose_noise_no_calibration_reaches_is_left_out_not_fatal(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: a peer's study of 4 trials whose records claim epsilon 1e-7 at delta 1e-10
    # for their released values (no noise multiplier up to 1e6 keeps 8 releases within it),
    # and an exact study, smaller and so weighed after it.
    a = make_home("A")
    tight = PrivacyGuarantee(epsilon=1e-7, delta=1e-10, protected="evaluation", accountant="pld")
    _publish_study(store, a, "privatestudy", 4, privacy=tight)
    _publish_study(store, a, "exactstudy", 3)
    task = TaskDescriptor("text-classification", 2, "1k-10k", language="en")
    # Execute: a warm start with room for one study.
    choice = choose_priors(store, task=task, objective_metric="accuracy", max_studies=1)
    # Assert: the warm start goes on with the exact study, which the private one never kept
    # out of the one place; the private one is left out, its guarantee named.
    assert [choice.sources[p.label].study for p in choice.priors] == ["exactstudy"]
    assert [(s.study, r) for s, r in choice.left_out] == [
        (
            "privatestudy",
            "its values were released under epsilon 1e-07 at delta 1e-10: noise too large to "
            "learn from",
        )
    ]


def test_a_private_priors_noise_is_rdps_calibration_whatever_its_accountant() -> None:
    # Prepare: the same three private trials, accounted by RDP and by PLD.
    def trials(accountant: str) -> list[RunRecord]:
        guarantee = PrivacyGuarantee(3.0, 1e-5, protected="both", accountant=accountant)
        return [replace(make_record(i), privacy=guarantee) for i in range(3)]

    # Execute
    rdp, pld = (released_noise(trials(a), "accuracy") for a in ("rdp", "pld"))
    # Assert: one figure, and at least what PLD calibrated for the study's 3 x 2 releases
    # (sensitivity 1 / 200 assumed rows in the 1k-10k bucket): cautious, never less noise.
    assert rdp == pld > 0
    assert pld >= release_noise(3.0, 1e-5, 6, "pld") / 200


def test_two_studies_whose_labels_would_match_are_told_apart(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: two studies of one signer whose pseudonyms share their first ten characters.
    a = make_home("A")
    _publish_study(store, a, "studyaaaa1x", 2)
    _publish_study(store, a, "studyaaaa1y", 3)
    # Execute
    choice = choose_priors(
        store, task=TaskDescriptor("text-classification"), objective_metric="accuracy"
    )
    # Assert: two priors, each under its own label and source.
    assert len({p.label for p in choice.priors}) == 2
    assert sorted((choice.sources[p.label].study, len(p.trials)) for p in choice.priors) == [
        ("studyaaaa1x", 2),
        ("studyaaaa1y", 3),
    ]


def test_a_warm_start_reads_the_catalog_within_its_byte_budget_never_half_a_study(
    store: SqlStore, make_home: MakeHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: ten one-trial studies, then a private two-trial one last in pseudonym order;
    # a budget that holds the first four records, then one that ends inside the last study.
    a = make_home("A")
    for i in range(10):
        _publish_study(store, a, f"onestudy{i}", 1)
    guarantee = PrivacyGuarantee(1.0, 1e-5, protected="evaluation", accountant="rdp")
    _publish_study(store, a, "zprivate", 2, privacy=guarantee)
    sizes = [
        len(s.envelope) for s in store.query(None, limit=100, order_by=parse_order_by("study"))
    ]
    task = TaskDescriptor("text-classification")
    # Execute
    monkeypatch.setattr(warm_start, "MAX_PRIOR_BYTES", sum(sizes[:4]))
    four = choose_priors(store, task=task, objective_metric="accuracy")
    monkeypatch.setattr(warm_start, "MAX_PRIOR_BYTES", sum(sizes[:11]))
    cut = choose_priors(store, task=task, objective_metric="accuracy")
    # Assert: the records past the budget were never read, and the report says how many.
    assert len(four.priors) == 4
    [(unread, reason)] = four.left_out
    assert (unread.trials, reason.split(":")[0]) == (8, "not read")
    # A study read in part is left out whole (read as one trial, a private study would seem
    # to have spread its budget over fewer releases: less noisy than it is).
    assert sorted(cut.sources[p.label].study for p in cut.priors) == [
        f"onestudy{i}" for i in range(10)
    ]
    assert [s.trials for s, _ in cut.left_out] == [2]


def test_each_signers_fifth_of_the_places_goes_ahead_of_another_signers_more_alike_studies(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: A's twelve studies alike the new task, C's twelve a little less (another size
    # bucket), B's one far less (another language).
    a, b, c = make_home("A"), make_home("B"), make_home("C")
    task = TaskDescriptor("text-classification", 2, "1k-10k", language="en")
    for i in range(12):
        _publish_study(store, a, f"astudy{i:04d}", 1)
        _publish_study(store, c, f"cstudy{i:04d}", 1, task=replace(task, size_bucket="<1k"))
    _publish_study(store, b, "bstudy0000", 1, task=replace(task, language="fr"))
    # Execute: ten places, so each signer's two most alike go first.
    choice = choose_priors(store, task=task, objective_metric="accuracy", max_studies=10)
    # Assert: C's two and B's one hold their places; A, the most alike, fills the rest.
    weighed = Counter(choice.sources[p.label].signer for p in choice.priors)
    assert weighed == {a.identity.node_id: 7, c.identity.node_id: 2, b.identity.node_id: 1}


def test_a_warm_start_calibrates_at_most_twice_as_many_studies_as_it_weighs(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: three private studies whose stated budget no noise meets, each larger (so
    # weighed first) than one exact study.
    a = make_home("A")
    tight = PrivacyGuarantee(epsilon=1e-7, delta=1e-10, protected="evaluation", accountant="rdp")
    for study in ("tightone1", "tighttwo2", "tightthree"):
        _publish_study(store, a, study, 4, privacy=tight)
    _publish_study(store, a, "exactstudy", 3)
    # Execute: one place, so two calibrations at most.
    choice = choose_priors(
        store,
        task=TaskDescriptor("text-classification"),
        objective_metric="accuracy",
        max_studies=1,
    )
    # Assert: after two, the others are not weighed, and the report says why.
    assert choice.priors == []
    reasons = Counter(reason.split(":")[0] for _, reason in choice.left_out)
    assert reasons == {
        "its values were released under epsilon 1e-07 at delta 1e-10": 2,
        "not weighed": 1,
    }
    [(together, _)] = [(s, r) for s, r in choice.left_out if r.startswith("not weighed")]
    assert (together.label.split("@")[0], together.trials) == ("2 studies", 7)


def test_a_peer_named_like_a_told_apart_label_gets_its_own(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: Alpha's two studies alike in their first characters, and a peer calling
    # itself "Alpha#2" with a third.
    a, b = make_home("A"), make_home("B")
    _publish_study(store, a, "studyaaaa1x", 1)
    _publish_study(store, a, "studyaaaa1y", 2)
    _publish_study(store, b, "studyaaaa1z", 3)
    names = {a.identity.node_id: "Alpha", b.identity.node_id: "Alpha#2"}
    # Execute
    choice = choose_priors(
        store,
        task=TaskDescriptor("text-classification"),
        objective_metric="accuracy",
        names=names,
    )
    # Assert: three priors under three labels, each traced to its own study and signer.
    assert len({p.label for p in choice.priors}) == 3
    assert sorted(
        (choice.sources[p.label].study, choice.sources[p.label].signer, len(p.trials))
        for p in choice.priors
    ) == [
        ("studyaaaa1x", a.identity.node_id, 1),
        ("studyaaaa1y", a.identity.node_id, 2),
        ("studyaaaa1z", b.identity.node_id, 3),
    ]


def test_an_exact_study_the_byte_budget_cuts_gives_the_trials_read(
    store: SqlStore, make_home: MakeHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a one-trial study, then an exact three-trial one; a budget ending inside it.
    a = make_home("A")
    _publish_study(store, a, "astudy00", 1)
    _publish_study(store, a, "bstudy00", 3)
    sizes = [len(s.envelope) for s in store.query(None, limit=10, order_by=parse_order_by("study"))]
    monkeypatch.setattr(warm_start, "MAX_PRIOR_BYTES", sum(sizes[:3]))
    # Execute
    choice = choose_priors(
        store, task=TaskDescriptor("text-classification"), objective_metric="accuracy"
    )
    # Assert: its two trials read inform the warm start; the one not read is counted.
    assert sorted(len(p.trials) for p in choice.priors) == [1, 2]
    assert [(s.trials, r.split(":")[0]) for s, r in choice.left_out] == [(1, "not read")]


def test_the_python_warm_start_fits_each_prior_on_at_most_its_share_of_trials(
    make_home: MakeHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a node whose catalog holds a study of seven trials; three allowed per prior.
    from optuna.distributions import FloatDistribution

    monkeypatch.setattr(warm_start, "MAX_PRIOR_TRIALS", 3)
    home = make_home("A")
    node_store = open_store(home.db_url())
    try:
        _publish_study(node_store, home, "bigstudy1", 7)
    finally:
        node_store.close()
    # Execute: what a team's own Optuna code calls.
    sampler = warm_start.from_catalog(
        home,
        {"learning_rate": FloatDistribution(1e-6, 1e-3, log=True)},
        task=TaskDescriptor("text-classification"),
        objective_metric="accuracy",
    )
    # Assert: the prior's surface sees three of its seven trials, and its report says so.
    [mapped] = sampler.used
    assert len(mapped.values) == 3
    assert "3 of its 7 trials here, spread over their ranking" in mapped.notes
