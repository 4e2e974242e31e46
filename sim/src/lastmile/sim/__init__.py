"""The embedded launcher behind `make run`, and the simulated city."""
