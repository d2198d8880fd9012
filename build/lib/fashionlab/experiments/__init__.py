"""Experiments: compare finished runs; record them (commands, commit, hardware, results) in experiments/."""
