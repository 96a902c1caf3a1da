"""Pure learning code (torch, stable-baselines3, numpy; no Django): preference data, reward model, policy, proposals."""
