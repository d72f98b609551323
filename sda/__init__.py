"""Smart Democratization Advisor (never imports Airflow).

models/ and train.py train the built-in CTR models on training shards; recipe.py is the recipe format;
advisors/ turn data statistics into recipes; hpo/ runs SigOpt-style experiments (offline on Optuna).
Still to come: the SigOpt API backend and server, and promotion (promote.py).
"""
