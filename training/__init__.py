"""Elastic training: data, losses, the training loop, evaluation and reports."""
