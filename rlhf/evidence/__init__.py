"""The evidence that feedback helps: simulated listeners and annotators, arms against baselines on held-out tracks."""
