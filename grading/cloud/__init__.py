"""The cloud layer: how the grader calls Microsoft services (HTTP pipeline, retry policy, identity)."""
