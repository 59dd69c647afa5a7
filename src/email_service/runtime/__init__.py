"""Process plumbing: the supervisor, the development server, gunicorn's hooks and access log, CPU priority,
the mail catcher, the metrics exporter and the broker's transport options. Nothing here knows about
jobs or recipients."""
