"""`python -m turncheck.locust`: the path of the locustfile, for `locust -f "$(…)"`."""

from turncheck.locust import LOCUSTFILE

print(LOCUSTFILE)
