"""Lightning module, losses, metrics, schedules, callbacks and the training run."""
