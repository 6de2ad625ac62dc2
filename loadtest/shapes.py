"""Load shapes for the shoprank load test. Use with: -f loadtest/locustfile.py,loadtest/shapes.py"""

from __future__ import annotations

from locust import LoadTestShape


class StepLoadShape(LoadTestShape):
    """Add `step_users` users every `step_seconds` up to `max_users`; stop after `time_limit` seconds, or after
    Locust's -t (--run-time) when it is given."""

    step_users = 2
    step_seconds = 10
    max_users = 8
    time_limit = 60
    use_common_options = True  # for -t; -u and -r do not change the steps

    def tick(self):
        run_time = self.get_run_time()
        if run_time >= self.run_time_limit():
            return None
        users = min(self.max_users, (int(run_time // self.step_seconds) + 1) * self.step_users)
        return users, self.step_users

    def run_time_limit(self) -> float:
        """Locust's -t in seconds if given, else `time_limit`."""
        options = getattr(self.runner.environment, "parsed_options", None) if self.runner is not None else None
        return getattr(options, "run_time", None) or self.time_limit
