from django.apps import AppConfig


class AnnotationsConfig(AppConfig):
    name = "annotations"
    verbose_name = "Annotations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .export import EXPORT_JOB
        from .jobs import job_kind_register
        from .uploads import UPLOAD_JOB

        # The long jobs whose worker may die under them (annotations.jobs recovers them).
        job_kind_register(UPLOAD_JOB)
        job_kind_register(EXPORT_JOB)
