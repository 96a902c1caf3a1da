from django.apps import AppConfig


class RlhfConfig(AppConfig):
    name = "rlhf"
    verbose_name = "Reward models, policies and retrain cycles"
    default_auto_field = "django.db.models.BigAutoField"
