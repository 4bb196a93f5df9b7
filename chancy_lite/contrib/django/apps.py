from django.apps import AppConfig


class ChancyLiteConfig(AppConfig):
    name = "chancy_lite.contrib.django"
    label = "chancy_lite"
    verbose_name = "chancy_lite"
