from django.apps import AppConfig


class RlhfConfig(AppConfig):
    name = "rlhf"
    verbose_name = "Reward models, policies and retrain cycles"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotations.jobs import job_kind_register

        from .cycle.state import CYCLE_JOB
        from .retarget.services import RETARGET_JOB

        # The long jobs whose worker may die under them (annotations.jobs recovers them).
        job_kind_register(RETARGET_JOB)
        job_kind_register(CYCLE_JOB)
