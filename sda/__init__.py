"""Smart Democratization Advisor: recipes, models, trainer, optimizer and promotion (never imports Airflow).

Built by the next issues: models and trainer (sda/models, sda/train.py), recipes and advisors
(sda/recipe.py, sda/advisors), the optimizer (sda/hpo) and promotion (sda/promote.py).
"""
