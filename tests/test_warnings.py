"""pyproject's warning filters: known third-party warnings are quiet by module, the project's own fail the test."""

import warnings

import pytest


def warn_from(module: str, category: type[Warning], message: str) -> list:
    """The warnings recorded when `module` warns, under the filters the test runs with."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit(message, category, f"{module.replace('.', '/')}.py", 1, module=module)
    return caught


def test_a_warning_of_the_project_fails_the_test():
    with pytest.raises(UserWarning, match="ours"):
        warn_from("pipeline.core.files", UserWarning, "ours")
    with pytest.raises(FutureWarning):
        warn_from("pipeline", FutureWarning, "ours too")


def test_keras_deprecations_are_quiet_and_other_packages_warnings_still_show():
    assert warn_from("keras.src.backend.tensorflow.core", DeprecationWarning, "__array__ copy keyword") == []
    assert warn_from("dvc.repo", DeprecationWarning, "old API") == []
    assert len(warn_from("pipelinex", UserWarning, "not ours")) == 1
    assert len(warn_from("keras.src.trainers.epoch_iterator", UserWarning, "Some other Keras warning")) == 1


def test_keras_running_out_of_data_fails_the_test():
    """Our streams declare their length, so a pass that runs out of data means one went unknown (make_dataset)."""
    with pytest.raises(UserWarning, match="ran out of data"):
        warn_from("keras.src.trainers.epoch_iterator", UserWarning, "Your input ran out of data")
