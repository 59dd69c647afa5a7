"""The Celery edge: the application object and the tasks that hand work to the services."""
