"""Django integration: a Django Tasks backend (:mod:`.backend`) and the ``chancy_lite_worker`` management command.

Add ``"chancy_lite.contrib.django"`` to ``INSTALLED_APPS`` (for the command) and configure::

    TASKS = {"default": {"BACKEND": "chancy_lite.contrib.django.backend.ChancyLiteBackend",
                         "QUEUES": ["default", "emails"],
                         "OPTIONS": {"path": BASE_DIR / "jobs.db"}}}

Uses Django 6's ``django.tasks``, or the ``django-tasks`` backport on older Django (extra ``[django]``).
"""
