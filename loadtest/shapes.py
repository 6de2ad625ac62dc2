"""Load shapes for the shoprank load test. Use with: -f loadtest/locustfile.py,loadtest/shapes.py"""

from __future__ import annotations

from locust import LoadTestShape


class StepLoadShape(LoadTestShape):
    """Add `step_users` users every `step_seconds` up to `max_users`; stop after `time_limit` seconds."""

    step_users = 2
    step_seconds = 10
    max_users = 8
    time_limit = 60

    def tick(self):
        run_time = self.get_run_time()
        if run_time >= self.time_limit:
            return None
        users = min(self.max_users, (int(run_time // self.step_seconds) + 1) * self.step_users)
        return users, self.step_users
