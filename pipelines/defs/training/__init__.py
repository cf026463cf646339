"""Training domain (Dagster wiring; the domain code is training/): training sets, rankers per
surface, evaluation, promotion, simulated A/B, off-policy evaluation.

assets.py       training/examples, then per surface rankers -> evaluation -> champion -> ab_test
ope_assets.py   per surface: off-policy evaluation of the champion
checks.py       served_features_match_training: train/serve parity, blocking on training/examples
jobs.py         training_job: train, evaluate and promote both rankers for one test day
resources.py    MLflow, the training config
definitions.py  the domain's Definitions (merged by pipelines/definitions.py)
"""
