"""How the shipped model (models/pretrained/model.pt) was made and measured: the GPU training
script and its rounds, the estimator head's CPU retraining, the calibration of the decision's
thresholds, and the figures of its model card. Run from the repository root, e.g.
``python -m models.pretrained.recipe.model_card``."""
