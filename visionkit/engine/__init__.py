"""The one training engine for every task: trainer, validator, predictor, LR finder and callbacks."""
