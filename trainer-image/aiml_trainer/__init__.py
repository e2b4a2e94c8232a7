"""Trainer that runs inside the Job: training, PEFT fine-tuning, progress events, reports."""
