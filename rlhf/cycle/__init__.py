"""The retrain cycle: parameters (torch-free defaults), state (start, watch, recover), steps (train, fine-tune, propose)."""
