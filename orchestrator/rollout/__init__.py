"""How a model version goes live: everything between `shoprank export` writing a new version folder and that
version answering every search.

    versions.py    the model repository's versions and manifests; loading exactly the wanted versions into Triton
                   (explicit model control), per-version readiness, warm-up, and in-flight counts for draining
    state.py       the rollout state (stable and candidate version, canary share, history), persisted as JSON
    guards.py      sliding windows of each version's outcomes and latencies, and the shadow agreement (RBO)
    controller.py  start (canary or shadow), shift, promote, rollback; sticky routing; automatic rollback

The admin gRPC service (its own port, bearer token) calls the controller: orchestrator/admin.py.

A version's path: export writes it -> `rollout start` loads and warms it (it serves nothing until ready) ->
canary (a sticky share of users) or shadow (scored beside the stable one, never served) -> `shift` -> `promote`
(every request) -> the old version is unloaded once its in-flight requests have drained. A guard that trips rolls
back the same way. Only the reranker rolls out here: the encoders' versions are those the served index was built
with (orchestrator/index.py), so a new encoder version goes live with a new index, never on its own.
"""
