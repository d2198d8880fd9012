"""Hyper-parameter sweeps: Optuna studies whose trials are training runs."""
