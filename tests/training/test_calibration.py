"""Temperature scaling and ECE on synthetic predictions whose calibration is known."""

from __future__ import annotations

import torch

from elastic_anytime.training.calibration import calibrate_exits, expected_calibration_error, fit_temperature


def _calibrated(n: int = 4000, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax is the true label distribution: labels are drawn from it."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator) * 2.0
    labels = torch.multinomial(logits.softmax(1), 1, generator=generator).squeeze(1)
    return logits, labels


def test_calibrated_logits_keep_a_temperature_near_one_and_a_small_ece() -> None:
    logits, labels = _calibrated()
    assert abs(fit_temperature(logits, labels) - 1.0) < 0.1
    assert expected_calibration_error(logits.softmax(1), labels) < 0.03


def test_overconfident_logits_get_a_temperature_above_one_and_a_lower_ece() -> None:
    logits, labels = _calibrated()
    sharp = logits * 3.0  # the same answers, three times too sure
    result = calibrate_exits([sharp, logits], labels)
    assert 2.5 < result["temperature"][0] < 3.5
    assert result["ece_after"][0] < result["ece_before"][0] / 2
    assert result["ece_before"][0] > 0.1


def test_ece_of_a_perfect_and_of_a_hopeless_predictor() -> None:
    labels = torch.tensor([0, 1, 2, 3])
    certain_right = torch.eye(4)
    certain_wrong = torch.eye(4).roll(1, dims=1)
    assert expected_calibration_error(certain_right, labels) == 0.0
    assert expected_calibration_error(certain_wrong, labels) == 1.0
