"""The sampler's own records in storage: chunked proposals that other workers read back."""

import optuna

from optuna_deepens import coordination


def test_long_proposal_is_chunked_and_read_back() -> None:
    study = optuna.create_study()
    trial = study.ask()
    proposal = {f"param_with_a_long_name_{i}": float(i) for i in range(200)}  # > 2,045 chars
    coordination.publish_proposal(study, trial._trial_id, proposal)
    frozen = study._storage.get_trial(trial._trial_id)
    assert len([k for k in frozen.system_attrs if k.startswith(coordination.PROPOSAL_KEY)]) > 1
    assert coordination.read_proposal(frozen) == proposal


def test_corrupt_proposal_is_ignored_not_fatal() -> None:
    study = optuna.create_study()
    trial = study.ask()
    study._storage.set_trial_system_attr(
        trial._trial_id, f"{coordination.PROPOSAL_KEY}:0", '{"a": 1'
    )
    study._storage.set_trial_system_attr(trial._trial_id, f"{coordination.PROPOSAL_KEY}:n", 1)
    assert coordination.read_proposal(study._storage.get_trial(trial._trial_id)) is None


def test_shorter_republished_proposal_ignores_stale_chunks() -> None:
    study = optuna.create_study()
    trial = study.ask()
    coordination.publish_proposal(
        study, trial._trial_id, {f"long_name_{i}": 1.0 for i in range(300)}
    )
    coordination.publish_proposal(study, trial._trial_id, {"x": 2.0})
    assert coordination.read_proposal(study._storage.get_trial(trial._trial_id)) == {"x": 2.0}


def test_trial_without_proposal_reads_none() -> None:
    study = optuna.create_study()
    trial = study.ask()
    assert coordination.read_proposal(study._storage.get_trial(trial._trial_id)) is None
