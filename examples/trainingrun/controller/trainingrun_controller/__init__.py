"""The example TrainingRun controller (see handlers)."""
