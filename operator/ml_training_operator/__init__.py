"""Kubernetes operator for 3GPP TS 28.105 ML training and fine-tuning requests."""
