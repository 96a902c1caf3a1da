"""Versions of the reward model and the policy, and the cycles that make them."""
