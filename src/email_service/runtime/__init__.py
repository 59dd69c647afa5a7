"""Process plumbing: the supervisor, the development server, gunicorn's hooks and access log, CPU priority,
the mail catcher and the metrics exporter. Nothing here knows about jobs or recipients."""
