"""Serving: self-contained TorchScript / torch.export artifacts that score raw Criteo features."""
