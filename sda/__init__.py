"""Smart Democratization Advisor (never imports Airflow).

models/ and train.py train the built-in CTR models on training shards; recipe.py is the recipe format;
advisors/ turn data statistics into recipes; hpo/ is the optimizer engine (SigOpt's experiment semantics,
offline on Optuna or against a SigOpt API; it imports no model or trainer); trials.py runs an experiment's
trials (suggest -> train -> observe); retrain/ is the optimize half of a DAG run; promote.py the registry.
"""
